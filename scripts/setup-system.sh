#!/bin/sh
# System packages the gateway needs: bubblewrap (the sandbox) and util-linux's prlimit.
set -e
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v prlimit >/dev/null 2>&1 || missing="$missing util-linux"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing system packages:$missing (install them as root: apt-get install$missing)" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $missing >/dev/null
