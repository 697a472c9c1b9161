# The single entry point. On a fresh machine: `make run` then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= data/demo
DEMO_LISTINGS ?= 20000
# A fixed start keeps the demo reproducible; listings fall in the three years before it.
DEMO_START ?= 2026-11-01
LISTEN ?= 127.0.0.1:50051
METRICS_PORT ?= 9464
PROTOS := $(wildcard proto/sanction/v1/*.proto)
STUBS := gen/sanction/v1/restriction_pb2.py
INSTALLED := $(VENV)/.installed

.PHONY: run test proto lint demo clean bench bench-tools nats-server

# grpcio-tools is bootstrapped first because the package (which includes the stubs)
# cannot be installed before the stubs exist.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "grpcio-tools>=1.60" "googleapis-common-protos>=1.60"

$(STUBS): $(PROTOS) | $(PY)
	rm -rf gen && mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iproto -I"$$($(PY) -c 'import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))')" \
		--python_out=gen --grpc_python_out=gen --pyi_out=gen $(PROTOS)
	touch gen/sanction/__init__.py gen/sanction/v1/__init__.py

proto: $(STUBS)

$(INSTALLED): pyproject.toml $(STUBS)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: $(INSTALLED)
	@if [ ! -f $(DATA_DIR)/data.mdb ]; then \
		echo "making a demo list of $(DEMO_LISTINGS) listings in $(DATA_DIR)"; \
		$(VENV)/bin/sanction init --data-dir $(DATA_DIR) && \
		$(VENV)/bin/sanction synth --seed 1 --listings $(DEMO_LISTINGS) --start $(DEMO_START) --out $(DATA_DIR)/demo-feed.jsonl \
			--probes $(DATA_DIR)/demo-probes.jsonl && \
		$(VENV)/bin/sanction load --data-dir $(DATA_DIR) $(DATA_DIR)/demo-feed.jsonl; \
	fi

run: demo
	$(VENV)/bin/sanction serve --data-dir $(DATA_DIR) --listen $(LISTEN) --metrics-port $(METRICS_PORT)

# The replication tests start a real JetStream server (Debian's nats-server); they are
# skipped, saying why, only if it cannot be installed.
nats-server:
	@command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || \
		{ apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; } || \
		echo "could not install nats-server: the replication tests will be skipped"

test: $(INSTALLED) nats-server
	$(PY) -m pytest -q

lint: $(INSTALLED)
	$(VENV)/bin/ruff check sanction_service loaders clients tests benchmarks

# Benchmarks (BENCHMARKS.md): BENCH_SIZE=6000000 for the full run.
BENCH_SIZE ?= 200000

bench-tools:
	@command -v redis-server >/dev/null && command -v h2load >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq redis-server nghttp2-client >/dev/null; } || \
		echo "could not install redis-server / h2load: those comparisons will be skipped"

bench: $(INSTALLED) bench-tools
	BENCH_SIZE=$(BENCH_SIZE) $(PY) benchmarks/dataset.py
	BENCH_SIZE=$(BENCH_SIZE) $(PY) -m pytest benchmarks/test_micro.py --benchmark-enable -p no:cacheprovider \
		--benchmark-json benchmarks/results/micro.json
	BENCH_SIZE=$(BENCH_SIZE) $(PY) benchmarks/startup.py
	BENCH_SIZE=$(BENCH_SIZE) $(PY) benchmarks/load.py

clean:
	rm -rf gen $(VENV) .pytest_cache
