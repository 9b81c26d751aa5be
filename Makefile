# The README's two commands (README.md, first lines); .ci/run runs the test one.
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: quickstart test data clean

# Offline Fashion-MNIST from Debian (only as root on Debian; otherwise tensorflow-datasets downloads it).
data:
	@if [ ! -d $(FMNIST) ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && apt-get install -y -q dataset-fashion-mnist; fi

quickstart: data
	python3 -m venv .venv && .venv/bin/pip install -e ".[plot]" && .venv/bin/kprune-cli prune recipes/quickstart.yaml --out runs/quickstart

test:
	python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest -q -n 2

clean:
	rm -rf .venv runs build *.egg-info
