# The gateway's image: the gateway and the data-analysis kernel image (the `kernel` extra) in one
# venv, bubblewrap for the sandbox, tini as init. docs/deploy.md says how to run it and which
# privileges the sandbox needs inside a container, and why.
#
# `make image` builds it offline: BASE is a Debian bookworm made with debootstrap from the
# Debian archive (python3, python3-venv, bubblewrap, tini, util-linux, libseccomp2 already in
# it) and the wheels come from build/wheelhouse, built with that image's own Python. Without
# them (any other BASE, e.g. the usual slim Python image, and network access):
#
#   docker build --build-arg BASE=python:3.11-slim-bookworm --build-arg WHEELS=online .
#
# No `# syntax=` line: it would pull a BuildKit frontend from a registry.
ARG BASE=python:3.11-slim-bookworm

FROM $BASE AS system
# What the sandbox runs besides Python: bubblewrap, util-linux's setpriv and prlimit (kernels'
# own uids and rlimits), libseccomp2 (the seccomp filter), tini (init: reaps, forwards SIGTERM).
# A base that has them (make image's) needs no network here.
RUN set -e; \
    if ! command -v bwrap >/dev/null || ! command -v tini >/dev/null \
       || ! command -v setpriv >/dev/null || ! command -v prlimit >/dev/null \
       || ! ldconfig -p | grep -q 'libseccomp\.so\.2'; then \
        apt-get update; \
        apt-get install -y --no-install-recommends bubblewrap tini util-linux libseccomp2 procps; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    command -v python3 >/dev/null

# The dependencies: a layer that changes only when they do (build/requirements.txt, written
# by make image from pyproject.toml), not with every change to the gateway's code.
FROM system AS deps
# online: pip downloads from the index; anything else: only build/wheelhouse (make image).
ARG WHEELS=wheelhouse
# LICENSE: a file that always matches, so these COPYs work without a wheelhouse too.
COPY LICENSE build/requirement[s].txt /deps/
COPY LICENSE build/wheelhous[e] /wheelhouse/
# The venv lives at /opt/venv: outside every path the sandbox binds (/usr, /etc's few files, the
# zygote's view under /run, /mnt/data, /tmp), so a kernel sees it read-only at its own path.
RUN set -e; \
    python3 -m venv /opt/venv; \
    if [ "$WHEELS" != online ]; then \
        /opt/venv/bin/pip install -q --no-cache-dir --no-index --find-links /wheelhouse \
            -r /deps/requirements.txt; \
        find /opt/venv -name __pycache__ -prune -exec rm -rf {} +; \
        /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib >/dev/null; \
    fi

# The gateway's own wheel.
FROM deps AS build
ARG WHEELS=wheelhouse
COPY pyproject.toml README.md LICENSE MANIFEST.in /src/
COPY gateway /src/gateway
COPY kernels /src/kernels
RUN set -e; \
    if [ "$WHEELS" = online ]; then index=""; else index="--no-index --find-links /wheelhouse"; fi; \
    /opt/venv/bin/pip wheel -q --no-cache-dir --no-deps $index --wheel-dir /dist /src

FROM system AS runtime
ARG WHEELS=wheelhouse
ARG EXTRAS=kernel,cluster
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /dist /tmp/dist
RUN set -e; \
    wheel=$(ls /tmp/dist/*.whl); \
    if [ "$WHEELS" = online ]; then \
        /opt/venv/bin/pip install -q --no-cache-dir "$wheel[$EXTRAS]"; \
    else \
        /opt/venv/bin/pip install -q --no-cache-dir --no-deps --no-index "$wheel"; \
    fi; \
    rm -rf /tmp/dist; \
    /opt/venv/bin/python -m compileall -q /opt/venv/lib/python3*/site-packages/gateway >/dev/null
COPY deploy/entrypoint.sh /usr/local/bin/gateway-entrypoint
COPY deploy/healthcheck.py /usr/local/bin/gateway-healthcheck
COPY deploy/drain.sh /usr/local/bin/gateway-drain
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8765 \
    GATEWAY_DATA_DIR=/var/lib/gateway \
    MPLBACKEND=Agg
# The data directory: working directories, the file store, snapshots, the kernels' sockets.
VOLUME /var/lib/gateway
EXPOSE 8765
# /healthz answers 200 while the gateway is up (degraded included): not ready is /readyz's job.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/venv/bin/python", "/usr/local/bin/gateway-healthcheck"]
# tini without -g: SIGTERM goes to the gateway alone, which drains its cells, snapshots its
# threads and stops its kernels itself (a signal to the whole group would kill them first).
# The gateway stays root in the container: it creates the kernels' cgroups and namespaces and
# starts every kernel as its own unprivileged uid (100000 and up) with no capabilities.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/gateway-entrypoint"]
CMD ["gateway", "serve"]
