# The services of deploy/compose-cluster.yaml besides the gateway nodes, in one image built here
# (scripts/build-image.sh): Debian's redis-server and HAProxy, and moto's S3 server.
#
# moto is an S3 *emulator* (it keeps objects in memory): it is here so the cluster compose file
# runs on a machine with no registry, as the repository's cluster tests do. Production points
# the nodes at a real S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage) instead.
ARG BASE=code-interpreter-gateway-services-base:bookworm

FROM $BASE AS build
# LICENSE: a file that always matches, so the COPY works without a wheelhouse too.
COPY LICENSE build/wheelhous[e] /wheelhouse/
RUN python3 -m venv /opt/moto \
    && /opt/moto/bin/pip install -q --no-cache-dir --no-index --find-links /wheelhouse \
        'moto[server]>=5' \
    && /opt/moto/bin/pip uninstall -y -q pip

FROM $BASE
COPY --from=build /opt/moto /opt/moto
COPY deploy/haproxy-compose.cfg /etc/haproxy/haproxy.cfg
ENTRYPOINT ["/usr/bin/tini", "--"]
