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


def test_gaps_give_the_paired_mean_its_interval_and_every_seed():
    def run(target, crit, k, t):
        return {"target": target, "criterion": crit, "kprune": {"accuracy_finetuned": k},
                "torch": {"accuracy_finetuned": t}}
    # 70 % random at 4 seeds, gaps -1, +1, -2, 0 points; 50 % l1 at 2 seeds only (too few: left out).
    seeds = [{"seed": s, "runs": [run(0.7, "random", 0.85 + d / 100, 0.85)] + ([run(0.5, "l1", 0.9, 0.9)] if s < 2 else [])}
             for s, d in zip((3, 5, 8, 9), (-1, 1, -2, 0))]
    lines = tc.gaps(seeds)
    assert len(lines) == 3 and "50%" not in "".join(lines)
    # mean -0.5, std 1.29, se 0.65, t(0.975, 3) = 3.182: half-width 2.05
    assert lines[2] == ("- 70% random, 4 seeds: -0.50 ± 1.29 (standard error 0.65; 95 % t-interval [-2.55, +1.55]; "
                        "1 of 4 seeds > 0); per seed: 3: -1.00, 5: +1.00, 8: -2.00, 9: +0.00")
