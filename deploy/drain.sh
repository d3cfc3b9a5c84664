#!/bin/sh
# Drains this gateway before it is stopped (Kubernetes' preStop hook; `docker exec` before
# `docker stop`): no new threads, running cells finish. In a cluster the node also releases
# every thread, and the next request for each lands on another node with its files.
# Never fails the stop: SIGTERM follows either way and the gateway drains on it too.
timeout=${GATEWAY_DRAIN_TIMEOUT:-60}
if [ -n "${GATEWAY_REGISTRY_URL:-}" ]; then
    gateway node drain "${GATEWAY_NODE_ID:?}" --wait "$timeout" \
        || echo "gateway-drain: node drain failed" >&2
elif [ -n "${GATEWAY_ADMIN_TOKEN:-}" ]; then
    scheme=ws
    [ -n "${GATEWAY_TLS_CERT:-}" ] && scheme=wss
    gateway pool drain --timeout "$timeout" \
        --url "${GATEWAY_ADMIN_URL:-$scheme://127.0.0.1:${GATEWAY_PORT:-8765}/admin}" \
        || echo "gateway-drain: pool drain failed" >&2
fi
exit 0
