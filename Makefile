# Two commands on a fresh machine: `make run` (gateway + live page) and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PORT    ?= 8765
DATA    ?= $(CURDIR)/.data
TOKEN   ?= $(shell cat $(DATA)/token 2>/dev/null)

.PHONY: setup system run test lint bench dist docs clean image deploy-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[kernel,test,bench,cluster,docs]'
	touch $@

system:
	sh scripts/setup-system.sh

setup: system $(VENV)/.installed

run: setup
	@mkdir -p $(DATA)
	@test -s $(DATA)/token || $(PY) -c 'import secrets; print(secrets.token_urlsafe(24))' > $(DATA)/token
	@test -s $(DATA)/admin-token || $(PY) -c 'import secrets; print(secrets.token_urlsafe(24))' > $(DATA)/admin-token
	@echo "live page: http://127.0.0.1:$(PORT)/?token=$$(cat $(DATA)/token)"
	@echo "admin:     GATEWAY_ADMIN_TOKEN=$$(cat $(DATA)/admin-token) $(VENV)/bin/gateway pool stats --url ws://127.0.0.1:$(PORT)/admin"
	GATEWAY_TOKENS="$$(cat $(DATA)/token)" GATEWAY_ADMIN_TOKEN="$$(cat $(DATA)/admin-token)" \
		$(VENV)/bin/gateway serve --port $(PORT) --data-dir $(DATA)

test: setup
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check gateway tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) -m scripts.bench
	$(PY) -m scripts.bench_cells
	$(PY) -m scripts.bench_burst
	$(PY) -m scripts.bench_start_method
	$(PY) -m scripts.bench_density
	$(PY) -m scripts.bench_gvisor
	$(PY) -m scripts.bench_jupyter

# The image (Dockerfile) and the cluster's service image, built with no container registry: a
# Debian base from debootstrap, wheels built by the base's own Python; each step cached
# (scripts/build-image.sh). Installs docker.io, docker-compose and debootstrap if missing and
# starts a docker daemon if none answers (scripts/setup-deploy.sh).
image:
	sh scripts/setup-deploy.sh
	sh scripts/build-image.sh

# The image, then tests/deploy with the container tests on: the container smoke test (the
# sandbox complete inside, a pandas cell through the published port, drain, SIGTERM), the
# compose cluster's failover, the Helm chart rendered and validated offline.
deploy-check: setup image
	GATEWAY_DEPLOY_TESTS=1 $(PY) -m pytest -q -ra tests/deploy $(PYTEST_ARGS)

# The sdist and the wheel (which carries the kernelspec and startup as gateway.kernels).
dist: $(VENV)/.installed
	rm -rf dist
	$(PY) -m build --outdir dist .

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link, anchor or nav
# entry fails the build. The settings table is generated: python -m scripts.settings_doc.
# NO_MKDOCS_2_WARNING: mkdocs-material's notice about its own end of life, on every build.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache dist site
