# The single entry point. On a fresh machine: `make run` then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Settings come from the SANCTION_* environment variables, as for every `sanction` command
# (README "Configuration"): e.g. `SANCTION_LISTEN=127.0.0.1:6000 SANCTION_METRICS_PORT=0 make run`
# or `make run SANCTION_DATA_DIR=/srv/demo`.
SANCTION_DATA_DIR ?= data/demo
export SANCTION_DATA_DIR
$(foreach old,DATA_DIR LISTEN METRICS_PORT,$(if $(filter command line,$(origin $(old))),\
	$(error $(old) is not read any more: set SANCTION_$(old) instead)))
DEMO_LISTINGS ?= 20000
# The demo is a list as of today: listings fall in the three years before DEMO_START and
# their follow-ups (delistings, exemptions, ...) come at most 30 days after them, so a start
# 31 days back puts the last event just before today and `sanction stats` shows no event
# from the future. The showcase listings have fixed dates (README "Check a passenger").
DEMO_START ?= $(shell $(PYTHON) -c 'import datetime as d; print(d.date.today() - d.timedelta(days=31))')
PROTOS := $(wildcard proto/sanction/v1/*.proto)
STUBS := gen/sanction/v1/restriction_pb2.py
INSTALLED := $(VENV)/.installed

.PHONY: run test proto lint format demo clean bench bench-tools bench-hiredis tools nats-server promtool

# `pip install .` generates the stubs itself (setup.py); `make proto` does it for the
# editable development install, with the grpcio-tools bootstrapped here.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "grpcio-tools>=1.60"

# google/rpc/status.proto from third_party/googleapis, as setup.py and buf take it.
$(STUBS): $(PROTOS) | $(PY)
	rm -rf gen && mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iproto -Ithird_party/googleapis \
		--python_out=gen --grpc_python_out=gen --pyi_out=gen $(PROTOS)
	touch gen/sanction/__init__.py gen/sanction/v1/__init__.py gen/sanction/py.typed

proto: $(STUBS)

$(INSTALLED): pyproject.toml $(STUBS)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: $(INSTALLED)
	@if [ ! -f $(SANCTION_DATA_DIR)/data.mdb ]; then \
		echo "making a demo list of $(DEMO_LISTINGS) listings as of $(DEMO_START) in $(SANCTION_DATA_DIR)"; \
		$(VENV)/bin/sanction init && \
		$(VENV)/bin/sanction synth --seed 1 --listings $(DEMO_LISTINGS) --start $(DEMO_START) \
			--out $(SANCTION_DATA_DIR)/demo-feed.jsonl --probes $(SANCTION_DATA_DIR)/demo-probes.jsonl && \
		$(VENV)/bin/sanction load $(SANCTION_DATA_DIR)/demo-feed.jsonl; \
	fi

# Listens on SANCTION_LISTEN, metrics on SANCTION_METRICS_PORT, store SANCTION_DATA_DIR (README).
run: demo
	$(VENV)/bin/sanction serve

# The replication tests start a real JetStream server (Debian's nats-server); they are
# skipped, saying why, only if it cannot be installed.
nats-server:
	@command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || \
		{ apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; } || \
		echo "could not install nats-server: the replication tests will be skipped"

# promtool (Debian's prometheus package) checks docs/ops/ (alert rules, their unit tests)
# and a real scrape in tests/test_metrics.py; those tests are skipped, saying why, only if
# it cannot be installed.
promtool:
	@command -v promtool >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
		echo "could not install prometheus (promtool): the promtool tests of tests/test_metrics.py will be skipped"

# From npm: buf (tests/test_buf.py: lint and breaking checks of the API) into .tools/ when
# none is on PATH, and the Node example's packages (clients/node/package-lock.json). As
# bench-tools gets Debian packages, a registry that cannot be reached does not fail the
# build: those tests then skip, saying why.
BUF_VERSION := 1.75.0
TOOLS := .tools

tools:
	@command -v buf >/dev/null || [ -x $(TOOLS)/node_modules/.bin/buf ] || \
		npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION) >/dev/null 2>&1 || \
		echo "could not install buf with npm: the buf lint and breaking tests will be skipped"
	@[ -d clients/node/node_modules/@grpc/grpc-js ] || \
		npm ci --silent --no-audit --no-fund --prefix clients/node >/dev/null 2>&1 || \
		echo "could not install the Node example's packages with npm: tests/test_node_client.py will be skipped"

# Lint first: a change that is not formatted, not clean or not typed fails the tests too.
test: $(INSTALLED) tools nats-server promtool lint
	$(PY) -m pytest -q

# ruff (rules and formatting: `make format` applies it) and mypy, which checks what
# [tool.mypy] files names (pyproject.toml).
PY_SOURCES := sanction_service loaders clients tests benchmarks setup.py
lint: $(INSTALLED)
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy

format: $(INSTALLED)
	$(VENV)/bin/ruff format $(PY_SOURCES)
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)

# Benchmarks (BENCHMARKS.md): BENCH_SIZE=6000000 for the full run. BEFORE=<checkout of
# 82670d0> adds the measured before/after of the event-by-event path (otherwise the ratio
# is taken against the recorded before figure, labelled so).
BENCH_SIZE ?= 200000
BEFORE ?=
BENCH_STARTED := $(shell date +%s)

bench-tools:
	@command -v redis-server >/dev/null && command -v h2load >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq redis-server nghttp2-client >/dev/null; } || \
		echo "could not install redis-server / h2load: those comparisons will be skipped"

# What a Redis user runs: redis-py parses replies with hiredis when it is importable. The
# baseline is measured with both parsers (benchmarks/targets.py chooses per connection).
bench-hiredis: $(INSTALLED)
	@$(PY) -c "import hiredis" 2>/dev/null || $(PY) -m pip install -q hiredis || \
		echo "could not install hiredis: the Redis baseline is measured with redis-py's Python parser only"

bench: $(INSTALLED) bench-tools bench-hiredis
	BENCH_SIZE=$(BENCH_SIZE) $(PY) benchmarks/dataset.py >/dev/null
	BENCH_SIZE=$(BENCH_SIZE) $(PY) -m pytest benchmarks/test_micro.py --benchmark-enable -p no:cacheprovider \
		--benchmark-json benchmarks/results/micro-$(BENCH_SIZE).json
	BENCH_SIZE=$(BENCH_SIZE) $(PY) benchmarks/startup.py
	BENCH_SIZE=$(BENCH_SIZE) $(PY) benchmarks/load.py --skip redis --out load-$(BENCH_SIZE)
	BENCH_SIZE=$(BENCH_SIZE) BENCH_STARTED=$(BENCH_STARTED) $(PY) benchmarks/targets.py $(if $(BEFORE),--before $(BEFORE))

clean:
	rm -rf gen $(VENV) .pytest_cache $(TOOLS) clients/node/node_modules
