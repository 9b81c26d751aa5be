# The README's two commands (README.md, first lines); .ci/run runs the test one.
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: quickstart test data clean

# Offline Fashion-MNIST from Debian (as root, or with password-less sudo, on Debian/Ubuntu;
# otherwise tensorflow-datasets downloads it, and without a network kprune says how to provide it).
data:
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = "0" ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" != none ]; then $$SUDO apt-get install -y -q dataset-fashion-mnist \
	    || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist; } \
	    || echo "could not install dataset-fashion-mnist; continuing without it"; fi; fi

quickstart: data
	python3 -m venv .venv && .venv/bin/pip install -e ".[plot]" && .venv/bin/kprune-cli prune recipes/quickstart.yaml --out runs/quickstart

test:
	python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .ci/torch-cpu && .venv/bin/python -m pytest -q -n 2

clean:
	rm -rf .venv runs build *.egg-info
