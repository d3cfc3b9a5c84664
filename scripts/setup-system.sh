#!/bin/sh
# System packages: bubblewrap (the sandbox), util-linux's prlimit (rlimits) and setpriv (kernels'
# own uids), libseccomp2 (the seccomp filter; apt itself needs it), redis-server and haproxy
# (several nodes, and their tests; one node needs neither), and Debian's chromium for the live
# page's browser test (WITH_BROWSER=0 skips it on a server that only runs the gateway).
set -e
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v prlimit >/dev/null 2>&1 || missing="$missing util-linux"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing="$missing libseccomp2"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || missing="$missing haproxy"
if [ "${WITH_BROWSER:-1}" = 1 ]; then
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing system packages:$missing (install them as root: apt-get install$missing)" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $missing >/dev/null
