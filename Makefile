# Everything a newcomer needs: `make run` and `make test` install what they use into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
PROTOS := $(wildcard protos/integrations/v1/*.proto)
PROMTOOL := .tools/prometheus/usr/bin/promtool

.DEFAULT_GOAL := help
.PHONY: help run test test-unit lint typecheck buf-lint proto proto-check sandbox demo bench h2load ci clean promtool
# apt-get needs root; as anyone else, ask sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.run-installed

# Without INTEGRATIONS_API_KEYS a laptop run serves without authentication, explicitly.
run: $(VENV)/.run-installed ## Start the service (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/python -m service $(if $(INTEGRATIONS_API_KEYS),,--allow-unauthenticated true) $(ARGS)

sandbox: $(VENV)/.run-installed ## Start the local fake provider (Google Calendar, OAuth, ICS, REST)
	$(BIN)/python -m sandbox $(ARGS)

# One pytest worker per core (pytest-xdist): most tests wait on sockets, processes and
# PostgreSQL rather than compute, so two workers on two cores take ~2/3 of the serial time.
test: $(VENV)/.dev-installed $(PROMTOOL) h2load ## Run the whole test suite (with the benchmarks in smoke mode)
	PROMTOOL="$(CURDIR)/$(PROMTOOL)" $(BIN)/pytest --numprocesses auto $(PYTEST_ARGS)

test-unit: $(VENV)/.dev-installed ## Run the fast unit tests only
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed h2load ## Run the benchmarks beside their baselines; writes BENCHMARKS.md
	$(BIN)/python -m benchmarks --out BENCHMARKS.md $(ARGS)

h2load: ## Install h2load (Debian's nghttp2-client), the benchmarks' load generator
	@command -v h2load >/dev/null 2>&1 || { \
		echo "installing h2load (nghttp2-client)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nghttp2-client >/dev/null; }

lint: $(VENV)/.dev-installed ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed ## mypy --strict on service/, clients/, sandbox/, tests/, benchmarks/
	$(BIN)/mypy

# Debian's prometheus package ships promtool (the alert rules' unit tests run it). The package
# is unpacked, never installed: installing it would start a Prometheus server, unpacking runs
# none of its scripts. apt-get refreshes its lists only when it cannot find the package.
$(PROMTOOL):
	@mkdir -p .tools/deb
	cd .tools/deb && (apt-get download -qq prometheus 2>/dev/null \
		|| (apt-get update -qq && apt-get download -qq prometheus))
	dpkg-deb -x .tools/deb/prometheus_*.deb .tools/prometheus
	rm -rf .tools/deb
	$(PROMTOOL) --version

promtool: $(PROMTOOL) ## Fetch promtool (from Debian's prometheus package) into .tools/

demo: $(VENV)/.run-installed ## The service and the sandbox: sync, break the provider, watch it recover
	$(BIN)/python -m sandbox.walkthrough $(ARGS)

$(BUF):
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

buf-lint: $(BUF) ## buf lint (STANDARD + COMMENTS)
	$(BUF) lint

proto: $(VENV)/.dev-installed ## Regenerate the Python stubs under clients/ from protos/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=clients --grpc_python_out=clients \
		--mypy_out=clients --mypy_grpc_out=clients $(PROTOS)

proto-check: proto ## Fail when the committed stubs are stale
	git diff --exit-code -- clients/integrations/v1

ci: lint typecheck buf-lint test ## What .ci/run runs

clean: ## Remove the virtualenv, tools and caches (keeps .data, the embedded database)
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
