# Two entry points (see README): `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: install quickstart test data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -e ".[test,plot]"

# Offline Fashion-MNIST from Debian (root only; otherwise tensorflow-datasets downloads it).
data:
	@if [ ! -d $(FMNIST) ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && apt-get install -y -q dataset-fashion-mnist; fi

quickstart: install data
	$(BIN)/kprune-cli prune recipes/quickstart.yaml --out runs/quickstart

test: install
	$(BIN)/python -m pytest -q -n 2 --durations=15

clean:
	rm -rf $(VENV) runs build *.egg-info
