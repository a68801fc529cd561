# ackhub — every command bootstraps what it needs: the virtual environment, the Python dependencies,
# the buf binary (from the npm registry) and the generated gRPC code.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
CONFIG ?= examples/demo.toml
# `buf breaking` compares proto/ with a base commit: on a branch, where it left main (its merge base: what
# the branch changed, not what main gained since); on main itself (where main would be compared with itself
# and prove nothing), main's previous commit (the first parent: main before the last merge). `main` or, in a
# fresh clone, `origin/main`. Only proto/ (the contract), not the vendored third_party/ module.
# Override: BREAKING_AGAINST=.git\#tag=v1.2.0,subdir=proto
BRANCH := $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
MAIN_REF := $(shell git rev-parse --verify -q main >/dev/null 2>&1 && echo main || echo origin/main)
BREAKING_BASE := $(shell { if [ "$(BRANCH)" = main ]; then git rev-parse HEAD~1; else git merge-base HEAD $(MAIN_REF); fi; } 2>/dev/null)
BREAKING_AGAINST ?= .git\#ref=$(BREAKING_BASE),subdir=proto
# The descriptor set of the contract (every ackhub.v1 file with its imports and source comments), built with
# each release for partners' tools (grpcurl -protoset, gateways, schema registries).
DESCRIPTOR := dist/ackhub-v1.binpb

.PHONY: help demo serve test chromium prometheus lint fmt proto proto-check buf-lint breaking descriptor bench clean node-agency docs dist

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/' | expand -t 14

# The distributions, lowest first; each is installed editable (setuptools adds its src/ folder to the path, so the
# `ackhub` namespace spans them all as it does when installed from wheels).
DISTS := proto audit core adapters connectors client hub
PYPROJECTS := $(foreach d,$(DISTS),$(d)/pyproject.toml)

$(VENV)/.installed: $(PYPROJECTS)
	$(PYTHON) -m venv $(VENV)
	rm -rf ackhub.egg-info  # left by the single distribution of earlier versions: it would shadow the new ones
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet \
		$(foreach d,$(filter-out hub,$(DISTS)),-e ./$(d)) -e './hub[dev]'
	touch $@

$(BUF): package.json package-lock.json
	# `npm install`, not `npm ci`: npm 11 refuses a lock file that lacks other platforms' optional buf binaries
	npm install --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed ## run the hub with simulated agencies and watch deliveries live
	$(VENV)/bin/ackhub demo

serve: $(VENV)/.installed ## run the hub with CONFIG (default examples/demo.toml)
	$(VENV)/bin/ackhub serve --config $(CONFIG)

proto: $(VENV)/.installed $(BUF) ## regenerate proto/src/ackhub/v1 (the ackhub-proto distribution) from proto/
	$(PY) scripts/gen_proto.py

proto-check: $(VENV)/.installed $(BUF)
	$(PY) scripts/gen_proto.py --check

docs: $(VENV)/.installed ## render docs/record-types.md from the record type catalogue (adapters/src/ackhub/adapters/schemas/)
	$(PY) scripts/gen_record_types.py

buf-lint: $(BUF)
	$(BUF) lint

breaking: $(BUF) ## compare proto/ with main (on main: its previous commit) for breaking changes
	@test -n "$(BREAKING_BASE)" || test "$(origin BREAKING_AGAINST)" != file || \
		{ echo "make breaking: no commit of main to compare with (git fetch origin main)"; exit 1; }
	$(BUF) breaking proto --against '$(BREAKING_AGAINST)'

descriptor: $(BUF) ## write the contract's descriptor set to dist/ackhub-v1.binpb (built with each release)
	@mkdir -p $(dir $(DESCRIPTOR))
	$(BUF) build --as-file-descriptor-set -o $(DESCRIPTOR)
	@echo "wrote $(DESCRIPTOR)"

lint: $(VENV)/.installed buf-lint breaking ## ruff, mypy, import-linter (one direction between distributions), buf lint and buf breaking
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy bench
	$(PY) scripts/gen_record_types.py --check
	$(PY) scripts/check_schemas.py --against main

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The console's browser tests drive Debian's chromium (never `playwright install`), with a CJK font so the
# 中文 pages render: install them from Debian packages when missing.
chromium:
	@test -x /usr/bin/chromium -a -d /usr/share/fonts/truetype/wqy || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei; }

# The alert rules under deploy/prometheus are checked with promtool, from Debian's prometheus package.
prometheus:
	@test -x /usr/bin/promtool || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

test: $(VENV)/.installed proto-check buf-lint breaking chromium prometheus ## run the tests (SQLite and the local PostgreSQL)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed ## ackhub's throughput and latency beside a RabbitMQ baseline (BENCH_ARGS="--records 2000")
	$(PY) -m bench.exchange $(BENCH_ARGS)

node-agency: ## install the Node.js example agency's pinned dependencies and check the ack vectors
	cd examples/node-agency && npm ci --no-audit --no-fund --loglevel=error && npm test

dist: $(VENV)/.installed ## build a wheel of every distribution into dist/
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist $(foreach d,$(DISTS),./$(d))
	@ls -1 dist/*.whl

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache dist
