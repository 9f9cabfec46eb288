# tickserve: `make demo` runs the whole pipeline, `make test` the suite, `make bench` the benchmarks.
# Everything lives in .venv/ at the repo root; `make install` creates or updates it idempotently.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STUBS  := clients/python/src/tickserve_proto/v1
PROTOS := $(wildcard protos/tickserve/v1/*.proto)
V2_STUBS  := clients/python/src/tickserve_proto/inference
V2_PROTOS := $(wildcard protos/inference/*.proto)
PYPROJECTS := pyproject.toml setup.py clients/python/pyproject.toml clients/dashboard/pyproject.toml $(wildcard plugins/*/pyproject.toml)
# Built-in plugins: each its own distribution, installed like any third-party adapter
# (onnx with its exporter, which training and the tests use; serving needs only onnxruntime).
PLUGINS := plugins/lightgbm plugins/xgboost 'plugins/onnx[export]' 

.PHONY: install stubs models demo test lint format bench bridge-bench signal-bench clean-models clean

install: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools>=77"  # the third-party plugin test builds with --no-build-isolation

# Stubs are generated from protos/, never edited by hand. The virtual path
# "tickserve_proto=protos/tickserve" makes them the importable package
# tickserve_proto.v1 (no bare top-level module, no clash with tickserve).
# The Open Inference Protocol (KServe V2) proto keeps its package `inference` (the wire names V2
# clients call) and becomes tickserve_proto.inference, built into a private descriptor pool:
# tritonclient, kserve and mlserver put the same `inference.*` names in the default pool, and a
# second registration fails on import ("duplicate symbol", kserve/kserve#3099).
$(STUBS)/.generated: $(PROTOS) $(V2_PROTOS) | $(VENV)/bin/python
	$(PIP) install "grpcio-tools>=1.66"
	rm -rf $(STUBS) $(V2_STUBS) && mkdir -p $(STUBS) $(V2_STUBS)
	$(PY) -m grpc_tools.protoc -Itickserve_proto=protos/tickserve -Itickserve_proto/inference=protos/inference \
		--python_out=clients/python/src --grpc_python_out=clients/python/src --pyi_out=clients/python/src \
		$(PROTOS) $(V2_PROTOS)
	$(PY) -c "import pathlib, sys; p = pathlib.Path(sys.argv[1]); a = '_descriptor_pool.Default().AddSerializedFile'; \
		s = p.read_text(); assert a in s, 'no default-pool registration to replace in ' + str(p); \
		p.write_text(s.replace(a, '_descriptor_pool.DescriptorPool().AddSerializedFile'))" $(V2_STUBS)/grpc_service_pb2.py
	touch $(STUBS)/__init__.py $(V2_STUBS)/__init__.py $@

stubs: $(STUBS)/.generated

# the compiled feature kernel is built by the editable install: a change to it needs a reinstall
$(VENV)/.installed: $(PYPROJECTS) server/tickserve/features/_kernel.c server/tickserve/_temperature.c $(STUBS)/.generated | $(VENV)/bin/python
	$(PIP) install -e clients/python -e '.[test]' -e clients/dashboard $(addprefix -e ,$(PLUGINS))
	touch $@

# DATA=DIR runs the demo on real data instead (see `tickserve demo --help`), e.g.
# make demo DATA=/work/shared/data/binance-btcusd-perp
demo: install
	$(VENV)/bin/tickserve demo --models models $(if $(DATA),--data $(DATA))

# N replicas of `serve` behind nginx (gRPC, health-checked) on 127.0.0.1:$(CLUSTER_PORT); Ctrl-C drains and stops
REPLICAS ?= 3
CLUSTER_PORT ?= 50051
.PHONY: cluster
cluster: install
	$(VENV)/bin/tickserve cluster --replicas $(REPLICAS) --port $(CLUSTER_PORT) --models models

test: install lint
	$(PY) -m pytest -q

# ruff: the rule set and the formatter's settings are in pyproject.toml ([tool.ruff]).
# `make test` runs it first; `make format` fixes what can be fixed.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The Streamlit dashboard (clients/dashboard/README.md), a client of a running server: address from
# TICKSERVE_SERVER (default 127.0.0.1:50051), TLS and token from TICKSERVE_TLS_CA / TICKSERVE_TLS_CERT /
# TICKSERVE_TLS_KEY / TICKSERVE_TOKEN (or TICKSERVE_TOKEN_FILE), or a TOML file named by TICKSERVE_DASHBOARD_CONFIG.
DASHBOARD_PORT ?= 8501
.PHONY: dashboard
dashboard: install
	$(VENV)/bin/streamlit run clients/dashboard/src/tickserve_dashboard/app.py --server.port $(DASHBOARD_PORT) \
		--server.address 127.0.0.1 --server.headless true --browser.gatherUsageStats false --client.toolbarMode viewer

bench: install
	$(PY) benchmarks/run.py

# The signal scoreboard on every real data set under ../shared/data: benchmarks/SIGNALS.md
# `tickserve bridge` (NATS JetStream) against the gRPC TickColumns path, in one run: README, The bridge
bridge-bench: install
	$(PY) benchmarks/bridge_bench.py

signal-bench: install
	$(PY) benchmarks/signals.py

models: install
	$(VENV)/bin/tickserve demo --models models --prepare-only

clean-models:
	rm -rf models/*/

clean:
	rm -rf $(VENV) $(STUBS) $(V2_STUBS) build *.egg-info */*.egg-info
