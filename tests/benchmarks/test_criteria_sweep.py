"""benchmarks/criteria_sweep.py's merge of per-process parts (benchmarks/device/jax_sweep.sh
runs one process per seed and MACs level) and its machine record."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import pytest  # noqa: E402

import criteria_sweep as cs  # noqa: E402


def _part(tmp_path, seed, level, acc, epochs=3, backend="jax"):
    runs = [{"criterion": c, "target": level, "sparsity": round(0.3 + level / 10, 4), "params": 100, "macs": 1000,
             "macs_removed": level, "accuracy_pruned": 0.1, "accuracy_bn": 0.5, "accuracy_finetuned": acc + i / 100}
            for i, c in enumerate(("l1", "random"))]
    data = {"benchmark": "criteria_sweep", "machine": {"backend": backend}, "wall_seconds": 1.0,
            "settings": {"seeds": [seed], "levels": [level], "criteria": ["l1", "random"], "epochs": epochs,
                         "uniform_sparsity": {f"{level:g}": round(0.3 + level / 10, 4)}},
            "seeds": [{"seed": seed, "dense": {"accuracy": 0.9, "accuracy_finetuned": 0.91, "params": 200,
                                               "macs": 2000}, "runs": runs}]}
    path = tmp_path / f"s{seed}_l{level}_e{epochs}_{backend}.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_merge_of_parts_split_by_level_tables_every_level(tmp_path, capsys):
    # the first part holds the highest level only: the merged settings must still list all three
    parts = [_part(tmp_path, s, lv, 0.80 + s / 100) for lv in (0.7, 0.3, 0.5) for s in (0, 1)]
    out = tmp_path / "merged.json"
    args = cs.parse(["--merge", *parts, "--json", str(out)])
    assert cs.merge(args) == 0
    merged = json.loads(out.read_text())
    assert merged["settings"]["levels"] == [0.3, 0.5, 0.7]
    assert merged["settings"]["seeds"] == [0, 1]
    assert merged["settings"]["uniform_sparsity"] == {"0.7": 0.37, "0.3": 0.33, "0.5": 0.35}
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| 30%") or line.startswith("| 50%")
            or line.startswith("| 70%")]
    assert len(rows) == 6  # 3 levels x 2 criteria
    # l1 over seeds 0 and 1: 80.5 +- 0.71 %, random 1 point higher
    assert "| 30% | l1 |" in rows[0] and "80.50 ± 0.71" in rows[0]
    assert "| 30% | random |" in rows[1] and "81.50 ± 0.71" in rows[1]


def test_merge_refuses_parts_of_other_protocols_or_backends(tmp_path):
    base = _part(tmp_path, 0, 0.3, 0.8)
    for other in (_part(tmp_path, 1, 0.3, 0.8, epochs=10), _part(tmp_path, 1, 0.3, 0.8, backend="tensorflow")):
        args = cs.parse(["--merge", base, other, "--json", str(tmp_path / "m.json")])
        with pytest.raises(SystemExit, match="differs from"):
            cs.merge(args)


def test_host_records_the_backend_without_tensorflow_elsewhere():
    import keras
    machine = cs.host()
    assert machine["backend"] == keras.backend.backend()
    assert machine["keras"] == keras.__version__ and "uptime" in machine
