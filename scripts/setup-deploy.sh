#!/bin/sh
# What `make image` and `make deploy-check` need on a Debian host, from Debian packages only
# (no container registry is used): docker.io (the engine, 20.10), docker-compose (1.29) and
# debootstrap (the base image is built from the Debian archive apt uses). Then a docker daemon:
# the host's own if one answers, else one started here with its own data and socket paths.
#
# That daemon runs with --iptables=false --ip-forward=false: the deploy tests reach containers
# from this host only (ports published on 127.0.0.1, compose's own networks between them), so
# it needs no NAT and leaves the host's firewall alone.
# Its cgroup namespace default is private (docker-compose 1.29 has no cgroupns_mode key): the
# gateway's entrypoint remounts the container's own cgroups writable, never the host's.
#
#   sh scripts/setup-deploy.sh          # install what is missing, make sure a daemon answers
#   DEPLOY_DOCKER_ROOT=/srv/docker ...  # where a daemon started here keeps its images
set -e
ROOT=${DEPLOY_DOCKER_ROOT:-/var/lib/cigw-docker}
RUN=${DEPLOY_DOCKER_RUN:-/run/cigw-docker}

missing=""
test -x /usr/sbin/dockerd || missing="$missing docker.io"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
test -x /usr/sbin/debootstrap || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing system packages:$missing (as root: apt-get install --no-install-recommends$missing)" >&2
        exit 1
    fi
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# A daemon already answering (the host's, or the one started below by an earlier run).
docker version >/dev/null 2>&1 && exit 0
if [ "${DOCKER_HOST:-unix:///var/run/docker.sock}" != "unix:///var/run/docker.sock" ]; then
    echo "DOCKER_HOST=$DOCKER_HOST does not answer" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "no docker daemon answers; start one (as root: sh scripts/setup-deploy.sh)" >&2
    exit 1
fi
mkdir -p "$ROOT" "$RUN"
cat > "$RUN/daemon.json" <<EOF
{"default-cgroupns-mode": "private", "storage-driver": "overlay2"}
EOF
echo "starting dockerd (data $ROOT, log $RUN/dockerd.log)"
nohup /usr/sbin/dockerd --config-file "$RUN/daemon.json" --data-root "$ROOT" \
    --exec-root "$RUN/exec" --pidfile "$RUN/dockerd.pid" --host unix:///var/run/docker.sock \
    --iptables=false --ip-forward=false --ip-masq=false \
    >"$RUN/dockerd.log" 2>&1 &
i=0
until docker version >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 60 ]; then
        tail -20 "$RUN/dockerd.log" >&2
        echo "dockerd did not answer within 60 s" >&2
        exit 1
    fi
    sleep 1
done
