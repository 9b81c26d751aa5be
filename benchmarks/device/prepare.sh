#!/usr/bin/env bash
# Host side of issue 18's GPU sweep: puts into .device/ (ignored by git) what a lent GPU machine
# lacks for `jax_sweep.sh`. Its image has Python 3.12, JAX and the common scientific packages
# (numpy, absl-py, h5py, ml-dtypes, rich, click, pyyaml, tqdm) but not Keras, two of Keras'
# dependencies (namex, optree), kprune or the data, and nothing can be fetched there. So:
#   .device/whl/   wheels for Python 3.12 x86-64: keras, namex, optree at the versions installed
#                  here, and kprune itself built from this working tree (pure Python);
#   .device/data/  the Fashion-MNIST IDX files (KPRUNE_DATA_DIR layout; `make data` installs them).
# About 35 MiB, inside the 64 MiB a device call may carry. Usage, from the repository root:
#   benchmarks/device/prepare.sh            # then the device tool: run(command="bash
#                                           #   benchmarks/device/jax_sweep.sh", carry=[".device"])
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
data=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .device
mkdir -p .device/whl .device/data/fashion_mnist
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .device/whl "keras==$(version keras)" "namex==$(version namex)" "optree==$(version optree)"
"$py" -m pip wheel -q --no-deps --no-build-isolation -w .device/whl .
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    cp "$data/$f.gz" .device/data/fashion_mnist/ 2>/dev/null || cp "$data/$f" .device/data/fashion_mnist/
done
rm -rf build kprune.egg-info
ls -1 .device/whl
du -sh .device
