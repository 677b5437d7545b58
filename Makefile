# The messaging-patterns cluster. `make` alone lists the targets; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Targets share .venv and the docker engine, and `install` must put system packages in before the venv.
.NOTPARALLEL:

# Every Python the Makefile runs is the project virtualenv's, made from $(PYTHON) by scripts/venv.sh:
# $(PYTHON) needs none of the project's packages and gets none (PEP 668 systems work as they are).
# PYTHON= given (command line or environment) remakes .venv from it if it differs; not given, .venv stays.
PYTHON ?= python3
PYTHON_GIVEN := $(if $(filter-out file,$(origin PYTHON)),$(PYTHON))
VENV := .venv
PY := $(VENV)/bin/python
# One set for every target (ops, tests, bench): `make up` then `make test` installs once.
VENV_EXTRAS := test,bench
# Debian's docker-compose v1 or the v2 plugin, whichever this machine has; the scripts read $COMPOSE.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
export COMPOSE
# In CI a docker test fails, never skips, when docker is unusable.
REQUIRE_DOCKER ?= $(if $(filter true,$(CI)),1,0)
export REQUIRE_DOCKER

LINT_PATHS := $(wildcard nodes ops tests bench scripts)
# --flag N only for the counts that are set: `make scale WORKERS=6`.
SCALE_FLAGS = $(if $(WORKERS),--workers $(WORKERS)) $(if $(PIPE_WORKERS),--pipe-workers $(PIPE_WORKERS)) $(if $(SUBSCRIBERS),--subscribers $(SUBSCRIBERS))

.PHONY: help install system-packages venv lint image up keys down status scale logs demo up-local down-local status-local bench bench-quick chaos soak test

help: ## list the targets (default)
	@echo "make TARGET [PYTHON=python3.X]   (python: $(PY); compose tool: $(COMPOSE))"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: system-packages venv ## what every target needs: redis-server, rabbitmq-server (its tests), debootstrap, chromium + chromium-driver (the dashboard's browser test) (apt, as root, when missing) and .venv

# Not in `make help`: the apt part of `install`. python3.X-venv only for a Debian python without ensurepip.
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	{ command -v debootstrap || test -x /usr/sbin/debootstrap; } >/dev/null || missing="$$missing debootstrap"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing="$$missing rabbitmq-server"; \
	{ command -v chromedriver || test -x /usr/bin/chromedriver; } >/dev/null || missing="$$missing chromium-driver"; \
	if [ ! -x $(PY) ] && ! $(PYTHON) -c 'import ensurepip' 2>/dev/null; then \
	  missing="$$missing $$($(PYTHON) -c 'import sys; sys.base_prefix == "/usr" and print("python%d.%d-venv" % sys.version_info[:2])' 2>/dev/null)"; \
	fi; \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> apt-get install $$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	  else echo "install: missing $$missing; as root: apt-get install $$missing" >&2; exit 1; fi; \
	fi

venv: ## make or refresh .venv (from PYTHON, default python3): pip install -e '.[test,bench]'; a no-op when up to date
	@PYTHON='$(PYTHON_GIVEN)' bash scripts/venv.sh $(VENV) $(VENV_EXTRAS)

lint: venv ## ruff check + ruff format --check
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

# The wheelhouse step runs `pip download` with the venv's pip: $(PYTHON) may have no pip at all.
image: install ## build the node image offline (base image by debootstrap, wheelhouse, mpc-node:latest), mpc-prometheus:latest and mpc-swarm-node:latest
	PYTHON=$(abspath $(PY)) bash scripts/build-image.sh
	bash scripts/build-service-image.sh prometheus
	bash scripts/build-swarm-node-image.sh

up: image $(if $(filter curve,$(SECURITY)),keys) ## build the image, start the compose cluster, wait healthy, print where to look [PROMETHEUS=1] [RABBITMQ=1] [SECURITY=curve]
	$(if $(filter-out 0,$(RABBITMQ)),bash scripts/build-service-image.sh rabbitmq)
	$(PY) -m ops.cluster up $(SCALE_FLAGS) $(if $(filter-out 0,$(PROMETHEUS)),--prometheus) $(if $(filter-out 0,$(RABBITMQ)),--rabbitmq)

keys: venv ## SECURITY=curve: CURVE keypairs, the ZAP allow-list and Redis ACL users in build/keys (once; --force anew)
	$(PY) -m ops.keys

down: venv ## stop and remove the compose cluster
	$(PY) -m ops.cluster down

status: venv ## status table of the compose cluster
	$(PY) -m ops.cluster status

scale: venv ## rescale the compose cluster: make scale WORKERS=6 [PIPE_WORKERS=3] [SUBSCRIBERS=4]
	$(PY) -m ops.cluster scale $(SCALE_FLAGS)

logs: venv ## follow structured logs: make logs [SERVICE=broker]
	$(PY) -m ops.cluster logs $(SERVICE)

demo: venv ## run the compose demo
	$(PY) -m ops.cluster demo

up-local: install ## the same nodes as plain processes under supervisord, no docker [WORKERS= PIPE_WORKERS= SUBSCRIBERS= BASE_PORT=]
	$(PY) -m ops.local up $(SCALE_FLAGS)

down-local: venv ## stop the local cluster
	$(PY) -m ops.local down

status-local: venv ## status table of the local cluster
	$(PY) -m ops.local status

bench: install ## throughput/latency against baselines run side by side
	$(PY) -m bench

bench-quick: install ## a short benchmark run, results in bench-results/quick.json
	@mkdir -p bench-results
	$(PY) -m bench --quick --json bench-results/quick.json

# The same cluster on Docker Swarm (ops/swarm, docs/scaling.md): NODES=1 uses (or initialises) a swarm on this
# engine, NODES=3 runs three engines in containers (mpc-swarm-node, built by `make image`). No ports.
NODES ?= 1
.PHONY: up-swarm down-swarm status-swarm scale-swarm demo-swarm

up-swarm: image ## the cluster as a swarm stack: make up-swarm [NODES=1|3] [WORKERS= PIPE_WORKERS= SUBSCRIBERS=]
	$(PY) -m ops.swarm up --nodes $(NODES) $(SCALE_FLAGS)

down-swarm: venv ## remove the swarm stack (its node containers; the swarm if up-swarm created it)
	$(PY) -m ops.swarm down

status-swarm: venv ## status table of the swarm stack, with the host each task runs on
	$(PY) -m ops.swarm status

scale-swarm: venv ## rescale the swarm stack live: make scale-swarm WORKERS=6 [PIPE_WORKERS=] [SUBSCRIBERS=]
	$(PY) -m ops.swarm scale $(SCALE_FLAGS)

demo-swarm: venv ## run the counted demo on the swarm stack
	$(PY) -m ops.swarm demo

# Faults under load on a compose project of its own (mpc-chaos-<random>, free host ports), then a loss report.
DURATION ?= 60
CHAOS_FLAGS = $(if $(SEED),--seed $(SEED))

chaos: image ## kill/stop/pause/disconnect/restart nodes under load, report losses: make chaos [DURATION=60] [SEED=N]
	$(PY) -m ops.chaos --duration $(DURATION) $(CHAOS_FLAGS)

soak: image ## make chaos for 10 minutes (not in CI) [SEED=N]
	$(PY) -m ops.chaos --duration 600 $(CHAOS_FLAGS)

test: install lint image ## the CI command: install, lint, image, unit + local + docker integration tests, quick bench
	@echo "==> pytest (REQUIRE_DOCKER=$(REQUIRE_DOCKER))"
	@rc=0; $(PY) -m pytest tests/unit tests/local tests/integration || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; exit 1; fi; \
	exit $$rc
	$(MAKE) --no-print-directory bench-quick
