#!/bin/sh
# How docs/deploy.md's privilege table was measured: start the image with the given docker run
# flags, wait for /readyz, and print what /healthz says is not enforced and how kernels start
# (the gateway's log when it never gets ready). Remove one grant at a time from
# deploy/compose.yaml's set and compare. Needs the image (make image) and curl.
#
#   sh scripts/probe-privileges.sh no-net-admin --cap-drop=ALL --cap-add=SYS_ADMIN ... \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined
set -u
name=cigw-probe-$1
shift
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
docker rm -f -v "$name" >/dev/null 2>&1
docker run -d --name "$name" -p "127.0.0.1:$port:8765" -e GATEWAY_TOKENS=probe:probe-token \
    -e GATEWAY_ADMIN_TOKEN=probe-admin -e GATEWAY_INSECURE_HTTP=true -e GATEWAY_POOL_SIZE=1 \
    "$@" "${IMAGE:-code-interpreter-gateway:latest}" >/dev/null || exit 1
status=000
i=0
while [ $i -lt 480 ]; do  # two minutes at most: a failing sandbox never gets ready
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")
    [ "$status" = 200 ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.25
    i=$((i + 1))
done
echo "$name: /readyz $status"
if [ "$status" = 200 ]; then
    curl -s -H 'Authorization: Bearer probe-admin' "http://127.0.0.1:$port/healthz" \
        | python3 -c 'import json, sys; h = json.load(sys.stdin)
print("not enforced:", h["limits"]["not_enforced"] or "nothing")
print("python kernels:", h["pool"]["start_method"])'
else
    docker logs --tail 8 "$name" 2>&1
fi
docker rm -f -v "$name" >/dev/null 2>&1
