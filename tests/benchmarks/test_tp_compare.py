"""benchmarks/tp_compare.py's kprune-side training step takes PyTorch's SGD update (coupled weight
decay, momentum buffer, Nesterov) on TensorFlow and on JAX; --merge keeps backends apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
sys.path.insert(0, BENCH)

import tp_compare as tc  # noqa: E402


def test_tensorflow_step_matches_pytorch_sgd():
    assert tc.check_trainer() < 1e-5


def test_jax_step_matches_pytorch_sgd():
    pytest.importorskip("jax")
    code = f"import sys; sys.path.insert(0, {BENCH!r}); import tp_compare as tc; print(tc.check_trainer())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="jax"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5


def test_merge_refuses_runs_of_two_backends(tmp_path):
    args = {"seeds": [0], "epochs": 3}
    paths = []
    for seed, host in ((0, {"cpu": "x"}), (1, {"backend": "jax"})):  # no backend recorded: TensorFlow
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({"args": dict(args, seeds=[seed]), "host": host, "seeds": [{"seed": seed}]}))
        paths.append(str(path))
    with pytest.raises(SystemExit, match="different Keras backends"):
        tc.merge(paths)
    merged = tc.merge(paths[:1])
    assert merged["args"]["seeds"] == [0]
