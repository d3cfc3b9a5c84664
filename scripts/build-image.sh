#!/bin/sh
# `make image`: the gateway's image (Dockerfile) and the cluster's service image
# (deploy/services.Dockerfile: redis-server, HAProxy, moto's S3 server), built with no
# container registry. Each step is cached and redone only when its input changes:
#
# 1. the base: debootstrap --variant=minbase (Debian bookworm from the archive apt uses here)
#    with python3, bubblewrap, tini, util-linux, libseccomp2; `docker import`ed as $BASE_IMAGE;
# 2. the wheelhouse (build/wheelhouse): every dependency of the image, downloaded and built by
#    the base image's own Python (a host Python of another patch release resolves differently),
#    keyed by pyproject.toml;
# 3. the services' base: $BASE_IMAGE plus Debian's redis-server and haproxy (apt in a container);
# 4. `docker build --network=none` of both images: nothing is downloaded there.
#
# IMAGE, BASE_IMAGE, DEPLOY_CACHE and DEBIAN_MIRROR override the defaults.
set -eu
cd "$(dirname "$0")/.."
mkdir -p build
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' gateway/__init__.py)
IMAGE=${IMAGE:-code-interpreter-gateway}
BASE_IMAGE=${BASE_IMAGE:-code-interpreter-gateway-base:bookworm}
SERVICES_BASE=${SERVICES_BASE:-code-interpreter-gateway-services-base:bookworm}
CACHE=${DEPLOY_CACHE:-/var/cache/code-interpreter-gateway}
PACKAGES=python3,python3-venv,bubblewrap,tini,util-linux,libseccomp2,procps,ca-certificates
export DOCKER_BUILDKIT=0  # the classic builder: BuildKit's frontend would come from a registry

mirror() {  # the first Debian archive apt is configured with here
    [ -n "${DEBIAN_MIRROR:-}" ] && { echo "$DEBIAN_MIRROR"; return; }
    found=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
            | grep -v security | head -n 1)
    [ -n "$found" ] || found=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' \
                               | grep -v security | head -n 1)
    echo "${found:-http://deb.debian.org/debian}"
}

stamp() { echo "$(date +%T) $*"; }

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    stamp "base: debootstrap $(mirror)"
    rootfs="$CACHE/rootfs"
    rm -rf "$rootfs"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$(mirror)" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi

# The image's requirements, from pyproject.toml: the dependencies, the kernel and cluster
# extras and setuptools (the gateway's own wheel is built in the Dockerfile, offline); the
# wheelhouse also holds moto's S3 server (the service image). It is rebuilt when they or the
# base change; the Dockerfile's dependency layer when build/requirements.txt does.
python3 - > build/requirements.new <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + extras["kernel"] + extras["cluster"]))
print("setuptools>=77")
EOF
# Rewritten only when it changes, so that its layers stay cached.
cmp -s build/requirements.new build/requirements.txt \
    || mv build/requirements.new build/requirements.txt
rm -f build/requirements.new
key=$( (cat build/requirements.txt; docker image inspect -f '{{.Id}}' "$BASE_IMAGE") \
      | sha256sum | cut -c1-16)
wheels=build/wheelhouse
if [ "$(cat $wheels/.key 2>/dev/null)" != "$key" ]; then
    stamp "wheelhouse: pip wheel with the base image's Python"
    rm -rf $wheels && mkdir -p $wheels
    cert=""
    for file in /etc/ssl/certs/ca-certificates.crt; do  # a proxy's CA the host trusts
        [ -f "$file" ] && cert="-v $file:/host-ca.crt:ro -e PIP_CERT=/host-ca.crt"
    done
    # shellcheck disable=SC2086
    docker run --rm --network=host $cert -v "$PWD/build/requirements.txt:/requirements.txt:ro" \
        -v "$PWD/$wheels:/wheels" "$BASE_IMAGE" sh -ec '
        python3 -m venv /tmp/venv
        /tmp/venv/bin/pip install -q --upgrade pip
        /tmp/venv/bin/pip wheel -q --wheel-dir /wheels -r /requirements.txt "moto[server]>=5"'
    echo "$key" > $wheels/.key
fi

if ! docker image inspect "$SERVICES_BASE" >/dev/null 2>&1; then
    stamp "services base: redis-server and haproxy from Debian"
    docker rm -f cigw-services-base >/dev/null 2>&1 || true
    docker run --name cigw-services-base --network=host "$BASE_IMAGE" sh -ec '
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            redis-server haproxy >/dev/null
        rm -rf /var/lib/apt/lists/*'
    docker commit cigw-services-base "$SERVICES_BASE" >/dev/null
    docker rm cigw-services-base >/dev/null
fi

stamp "image: $IMAGE:$VERSION"
docker build -q --network=none --build-arg BASE="$BASE_IMAGE" -t "$IMAGE:$VERSION" \
    -t "$IMAGE:latest" . >/dev/null
stamp "image: $IMAGE-services:$VERSION"
docker build -q --network=none --build-arg BASE="$SERVICES_BASE" -f deploy/services.Dockerfile \
    -t "$IMAGE-services:$VERSION" -t "$IMAGE-services:latest" . >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
stamp done
