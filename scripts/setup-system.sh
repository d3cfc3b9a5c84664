#!/bin/sh
# System packages: bubblewrap (the sandbox), util-linux's prlimit (rlimits) and setpriv (kernels'
# own uids), libseccomp2 (the seccomp filter; apt itself needs it), redis-server and haproxy
# (several nodes, and their tests; one node needs neither), and Debian's chromium for the live
# page's browser test (WITH_BROWSER=0 skips it on a server that only runs the gateway).
# R and IRkernel for R threads (WITH_R=0 skips them): Debian's r-cran-irkernel without
# recommends, ~30 packages (~55 MB installed; the recommends would pull ~650).
# runsc (gVisor, Debian's package) and tini for `sandbox = gvisor`, and their tests (~25 MB).
# Then Deno, the runtime of JavaScript/TypeScript threads (WITH_DENO=0 skips it): the npm
# package `deno` ships the binary (~96 MB, a few seconds); `npm install -g` puts it under npm's
# prefix, /usr on Debian (/usr/bin/deno), which the sandbox already sees read-only.
set -e
DENO_VERSION=2.9.6
install_deno() {
    [ "${WITH_DENO:-1}" = 1 ] || return 0
    [ "$(deno --version 2>/dev/null | head -n 1 | cut -d ' ' -f 2)" = "$DENO_VERSION" ] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: JavaScript/TypeScript threads stay unavailable (install nodejs)" >&2
        return 0
    fi
    if [ "$(id -u)" != 0 ] && [ ! -w "$(npm config get prefix)" ]; then
        echo "deno $DENO_VERSION missing: as root, npm install -g deno@$DENO_VERSION" >&2
        return 0
    fi
    echo "installing: deno@$DENO_VERSION (npm)"
    npm install -g --no-audit --no-fund --loglevel=error "deno@$DENO_VERSION"
    deno --version >/dev/null
}
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v prlimit >/dev/null 2>&1 || missing="$missing util-linux"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing="$missing libseccomp2"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || missing="$missing haproxy"
command -v runsc >/dev/null 2>&1 || missing="$missing runsc"
command -v tini >/dev/null 2>&1 || missing="$missing tini"
r_missing=""
if [ "${WITH_R:-1}" = 1 ]; then
    [ -d /usr/lib/R/site-library/IRkernel ] || r_missing="r-cran-irkernel"
fi
if [ "${WITH_BROWSER:-1}" = 1 ]; then
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
fi
# Node >= 20 runs the TypeScript client's tests (clients/js: npm ci && npm test in .ci/run).
command -v node >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -z "$missing$r_missing" ]; then
    install_deno
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing system packages:$missing $r_missing (install them as root: apt-get install$missing;" \
         "apt-get install --no-install-recommends $r_missing)" >&2
    exit 1
fi
echo "installing:$missing $r_missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
[ -z "$missing" ] || apt-get install -y -qq $missing >/dev/null
[ -z "$r_missing" ] || apt-get install -y -qq --no-install-recommends $r_missing >/dev/null
install_deno
