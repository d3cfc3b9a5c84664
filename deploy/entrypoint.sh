#!/bin/sh
# The container's entrypoint (under tini): gives the gateway the writable cgroups and /proc/sys
# its sandbox needs, then execs the command. A container runtime mounts both read-only; the
# gateway makes them read-only again for every kernel (bubblewrap binds /proc/sys read-only,
# each kernel gets a cgroup of its own that it cannot leave).
#
# Only the container's own cgroups are touched: with a private cgroup namespace (docker's
# --cgroupns=private, the default on cgroup v2 hosts) the container's cgroup is the root of what
# it sees. With the host's namespace the remounts would expose the host's hierarchy, so they
# are skipped, and /healthz reports the per-kernel limits as missing.
#
# Needs CAP_SYS_ADMIN (mount); without it every step is skipped with a warning, and /healthz
# says which sandbox layer is missing. docs/deploy.md lists the privileges and why.
#
# GATEWAY_CGROUP_ROOT, GATEWAY_PROC_SYS, GATEWAY_SELF_CGROUP and GATEWAY_MOUNT only exist for
# the tests (tests/deploy/test_entrypoint.py runs this against a fake tree).
set -u
CGROUP_ROOT=${GATEWAY_CGROUP_ROOT:-/sys/fs/cgroup}
PROC_SYS=${GATEWAY_PROC_SYS:-/proc/sys}
SELF_CGROUP=${GATEWAY_SELF_CGROUP:-/proc/self/cgroup}
MOUNT=${GATEWAY_MOUNT:-mount}
CONTROLLERS="memory pids cpu"

say() { echo "gateway-entrypoint: $*" >&2; }

remount_rw() {  # $1: a mount point (a read-only one; access(2) says EROFS for those)
    [ -w "$1" ] && return 0
    # bind: only this mount point's read-only flag changes (a plain remount of the cgroup
    # filesystem itself would be refused: the host has it mounted too).
    $MOUNT -o remount,bind,rw "$1" 2>/dev/null || {
        say "cannot remount $1 read-write (needs CAP_SYS_ADMIN); the gateway reports what is missing"
        return 1
    }
}

private_namespace() {  # every line of /proc/self/cgroup names the root: a namespace of our own
    ! grep -qv ':/$' "$SELF_CGROUP"
}

cgroup_v2() {
    remount_rw "$CGROUP_ROOT" || return 0
    # cgroup v2's rule: a cgroup that delegates controllers to children holds no process. Move
    # this container's processes (this shell, tini) into a leaf so the root can delegate.
    mkdir -p "$CGROUP_ROOT/init"
    while read -r pid; do
        echo "$pid" > "$CGROUP_ROOT/init/cgroup.procs" 2>/dev/null || true
    done < "$CGROUP_ROOT/cgroup.procs"
    available=$(cat "$CGROUP_ROOT/cgroup.controllers")
    enable=""
    for name in $CONTROLLERS; do
        case " $available " in
            *" $name "*) enable="$enable +$name" ;;
            *) say "cgroup v2: the $name controller is not delegated to this container" ;;
        esac
    done
    # One write: the kernel takes the whole list or none of it.
    [ -z "$enable" ] || echo "${enable# }" > "$CGROUP_ROOT/cgroup.subtree_control" \
        || say "cgroup v2: cannot enable$enable"
}

cgroup_v1() {
    for name in $CONTROLLERS; do
        dir="$CGROUP_ROOT/$name"
        [ -d "$dir" ] || { say "cgroup v1: no $name controller mounted"; continue; }
        # cpu is often a symlink to cpu,cpuacct: remount the mount point itself.
        remount_rw "$(readlink -f "$dir")" || true
    done
}

# Kernel uids are host uids, and the claims that keep two gateways on one host apart live in
# /run, which is the container's own. Pods of a StatefulSet (NAME-0, NAME-1, ...) that land on
# the same host take separate ranges: GATEWAY_KERNEL_UID_STRIDE uids from 100000 + ordinal x
# stride (an explicit GATEWAY_KERNEL_UID_BASE wins).
if [ -n "${GATEWAY_KERNEL_UID_STRIDE:-}" ] && [ -z "${GATEWAY_KERNEL_UID_BASE:-}" ]; then
    ordinal=${HOSTNAME##*-}
    case $ordinal in *[!0-9]*|"") ordinal=0 ;; esac
    GATEWAY_KERNEL_UID_BASE=$((100000 + ordinal * GATEWAY_KERNEL_UID_STRIDE))
    GATEWAY_KERNEL_UID_COUNT=$GATEWAY_KERNEL_UID_STRIDE
    export GATEWAY_KERNEL_UID_BASE GATEWAY_KERNEL_UID_COUNT
fi

if [ "$(id -u)" = 0 ] && [ -z "${GATEWAY_SKIP_REMOUNT:-}" ]; then
    if ! private_namespace; then
        say "the container shares the host's cgroup namespace: its cgroups stay read-only" \
            "(run it with --cgroupns=private)"
    elif [ -f "$CGROUP_ROOT/cgroup.controllers" ]; then
        cgroup_v2
    else
        cgroup_v1
    fi
    # bubblewrap's --disable-userns writes the new user namespace's own
    # user.max_user_namespaces: /proc/sys must be writable where the gateway starts it.
    remount_rw "$PROC_SYS" || true
fi

exec "$@"
