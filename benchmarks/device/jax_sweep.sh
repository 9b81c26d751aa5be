#!/usr/bin/env bash
# Device side of issue 18's GPU sweep: BENCHMARKS.md's criteria sweep (criteria_sweep.py) at full
# scale on Keras 3's JAX backend, on a lent GPU machine without TensorFlow. Run through the device
# tool after `benchmarks/device/prepare.sh`, from the repository root:
#   run(command="bash benchmarks/device/jax_sweep.sh", carry=[".device"], timeout_s=600)
# Protocol: ResNet-20 width 0.5, all 60,000 training images, 10 dense epochs (SGD 0.05, cosine),
# all eight criteria, 30/50/70 % MACs removed, BatchNorm recalibration on 20 batches, 2 fine-tuning
# epochs over the 60,000 images (SGD 0.01, cosine), the 10,000 test images, seeds 0 1 2.
# One process per (seed, level) — 9 on the one GPU, XLA compiling every pruned shape on the CPU
# cores in parallel; XLA's deterministic GPU ops, so the three processes of a seed train the same
# dense model. Each process writes its JSON after every row and stops after LIMIT seconds (default
# 480), so a cut run still returns what it finished. Extra arguments go to criteria_sweep.py
# (a smoke run: SEEDS=0 LEVELS=0.5 ... --quick). What comes back ($OUT, else runs/device here):
# criteria_sweep_jax.json (the parts merged; its tables are printed last) and
# criteria_sweep_jax_parts.tar.gz (each process's JSON and log).
set -uo pipefail
cd "$(dirname "$0")/../.."
site=${SITE:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .device/whl/*.whl || exit 1
export PYTHONPATH="$site" KERAS_BACKEND=jax KPRUNE_DATA_DIR="$PWD/.device/data" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_FLAGS="${XLA_FLAGS:---xla_gpu_deterministic_ops=true}"
out=${OUT:-runs/device}
parts=$(mktemp -d)
mkdir -p "$out"
python3 -c "import jax, keras, kprune; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'backend', keras.backend.backend())" || exit 1
for s in ${SEEDS:-0 1 2}; do
    for level in ${LEVELS:-0.3 0.5 0.7}; do
        timeout "${LIMIT:-480}" python3 benchmarks/criteria_sweep.py --seeds "$s" --levels "$level" --width 0.5 \
            --train-take 60000 --epochs 10 --test-take 10000 --finetune-take 60000 --finetune-epochs 2 \
            --finetune-schedule cosine "$@" --json "$parts/s${s}_l${level}.json" >"$parts/s${s}_l${level}.log" 2>&1 &
    done
done
wait
tail -q -n 2 "$parts"/*.log
tar czf "$out/criteria_sweep_jax_parts.tar.gz" -C "$parts" .
python3 benchmarks/criteria_sweep.py --merge "$parts"/*.json --json "$out/criteria_sweep_jax.json"
