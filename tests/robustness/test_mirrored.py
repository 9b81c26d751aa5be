"""MirroredStrategy over two logical CPU devices gives the same pruning as one device.

Logical devices must be configured before TensorFlow initializes, so the scenario
(``benchmarks/mirrored.py``) runs in its own process.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mirrored_two_replicas_match_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "mirrored.py"), "--synthetic",
                           "--quick", "--json", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    # taylor_fo reads gradients at every mask update: the data criterion runs under the strategy
    assert r["mask_assignments"][0] == r["mask_assignments"][1] > 0
    assert r["updates_cross_replica"] is True       # every mask assignment in cross-replica context
    assert r["replicas_equal"] is True              # both replicas hold identical masks and weights
    assert r["same_masks"] is True                  # same masks as single-device training
    assert r["max_weight_diff"] < 1e-4
    assert abs(r["accuracy"]["one_device"] - r["accuracy"]["mirrored_2"]) <= 1 / r["test_examples"] + 1e-9
    for a, b in zip(r["loss"]["one_device"], r["loss"]["mirrored_2"]):
        assert abs(a - b) < 1e-4
    assert 0.3 < r["sparsity"]["mirrored_2"] == r["sparsity"]["one_device"]
