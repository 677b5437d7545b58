# The messaging-patterns cluster. `make` alone lists the targets; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# Debian's docker-compose v1 or the v2 plugin, whichever this machine has; the scripts read $COMPOSE.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
export COMPOSE
# In CI a docker test fails, never skips, when docker is unusable.
REQUIRE_DOCKER ?= $(if $(filter true,$(CI)),1,0)
export REQUIRE_DOCKER

LINT_PATHS := $(wildcard nodes ops tests bench scripts)
INSTALL_STAMP := build/.install-stamp
# Every import `make test` and `make bench` need; `make install` re-runs pip when one fails.
IMPORTS := zmq redis msgpack tenacity prometheus_client rich supervisor pytest pytest_timeout docker matplotlib pyinstrument hiredis
comma := ,
space := $(subst ,, )
IMPORT_LIST := $(subst $(space),$(comma),$(strip $(IMPORTS)))
# --flag N only for the counts that are set: `make scale WORKERS=6`.
SCALE_FLAGS = $(if $(WORKERS),--workers $(WORKERS)) $(if $(PIPE_WORKERS),--pipe-workers $(PIPE_WORKERS)) $(if $(SUBSCRIBERS),--subscribers $(SUBSCRIBERS))

.PHONY: help install lint image up down status scale logs demo up-local down-local status-local bench bench-quick test

help: ## list the targets (default)
	@echo "make TARGET   (compose tool: $(COMPOSE))"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install redis-server/debootstrap (as root, when missing) and the Python deps (pip install -e '.[test,bench]')
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	{ command -v debootstrap || test -x /usr/sbin/debootstrap; } >/dev/null || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> apt-get install$$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	  else echo "install: missing$$missing; as root: apt-get install$$missing" >&2; exit 1; fi; \
	fi
	@if [ -f $(INSTALL_STAMP) ] && [ $(INSTALL_STAMP) -nt pyproject.toml ] \
	    && $(PYTHON) -c 'import $(IMPORT_LIST)' 2>/dev/null && command -v ruff >/dev/null; then \
	  echo "==> python deps up to date ($(INSTALL_STAMP))"; \
	else \
	  echo "==> $(PYTHON) -m pip install -e '.[test,bench]'"; \
	  PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet -e '.[test,bench]' && mkdir -p $(dir $(INSTALL_STAMP)) && touch $(INSTALL_STAMP); \
	fi

lint: ## ruff check + ruff format --check
	ruff check $(LINT_PATHS)
	ruff format --check $(LINT_PATHS)

image: ## build the node image offline (base image by debootstrap, wheelhouse, mpc-node:latest)
	bash scripts/build-image.sh

up: image ## build the image, start the compose cluster, wait healthy, print where to look
	$(PYTHON) -m ops.cluster up $(SCALE_FLAGS)

down: ## stop and remove the compose cluster
	$(PYTHON) -m ops.cluster down

status: ## status table of the compose cluster
	$(PYTHON) -m ops.cluster status

scale: ## rescale the compose cluster: make scale WORKERS=6 [PIPE_WORKERS=3] [SUBSCRIBERS=4]
	$(PYTHON) -m ops.cluster scale $(SCALE_FLAGS)

logs: ## follow structured logs: make logs [SERVICE=broker]
	$(PYTHON) -m ops.cluster logs $(SERVICE)

demo: ## run the compose demo
	$(PYTHON) -m ops.cluster demo

up-local: ## the same nodes as plain processes under supervisord, no docker [WORKERS= PIPE_WORKERS= SUBSCRIBERS= BASE_PORT=]
	$(PYTHON) -m ops.local up $(SCALE_FLAGS)

down-local: ## stop the local cluster
	$(PYTHON) -m ops.local down

status-local: ## status table of the local cluster
	$(PYTHON) -m ops.local status

bench: ## throughput/latency against baselines run side by side
	$(PYTHON) -m bench

bench-quick: ## a short benchmark run, results in bench-results/quick.json
	@mkdir -p bench-results
	$(PYTHON) -m bench --quick --json bench-results/quick.json

test: install lint image ## the CI command: install, lint, image, unit + local + docker integration tests, quick bench
	@echo "==> pytest (REQUIRE_DOCKER=$(REQUIRE_DOCKER))"
	@rc=0; $(PYTHON) -m pytest tests/unit tests/local tests/integration || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; exit 1; fi; \
	exit $$rc
	$(MAKE) --no-print-directory bench-quick
