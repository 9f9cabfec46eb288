# tickserve: `make demo` runs the whole pipeline, `make test` the suite, `make bench` the benchmarks.
# Everything lives in .venv/ at the repo root; `make install` creates or updates it idempotently.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STUBS  := clients/python/src/tickserve_proto/v1
PROTOS := $(wildcard protos/tickserve/v1/*.proto)
PYPROJECTS := pyproject.toml clients/python/pyproject.toml $(wildcard plugins/*/pyproject.toml)
# Built-in plugins: each its own distribution, installed like any third-party adapter
# (onnx with its exporter, which training and the tests use; serving needs only onnxruntime).
PLUGINS := plugins/lightgbm plugins/xgboost 'plugins/onnx[export]' 

.PHONY: install stubs models demo test bench clean-models clean

install: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools>=77"  # the third-party plugin test builds with --no-build-isolation

# Stubs are generated from protos/, never edited by hand. The virtual path
# "tickserve_proto=protos/tickserve" makes them the importable package
# tickserve_proto.v1 (no bare top-level module, no clash with tickserve).
$(STUBS)/.generated: $(PROTOS) | $(VENV)/bin/python
	$(PIP) install "grpcio-tools>=1.66"
	rm -rf $(STUBS) && mkdir -p $(STUBS)
	$(PY) -m grpc_tools.protoc -Itickserve_proto=protos/tickserve \
		--python_out=clients/python/src --grpc_python_out=clients/python/src --pyi_out=clients/python/src \
		$(PROTOS)
	touch $(STUBS)/__init__.py $@

stubs: $(STUBS)/.generated

$(VENV)/.installed: $(PYPROJECTS) $(STUBS)/.generated | $(VENV)/bin/python
	$(PIP) install -e clients/python -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $@

demo: install
	$(VENV)/bin/tickserve demo --models models

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/run.py

models: install
	$(VENV)/bin/tickserve demo --models models --prepare-only

clean-models:
	rm -rf models/*/

clean:
	rm -rf $(VENV) $(STUBS) build *.egg-info */*.egg-info
