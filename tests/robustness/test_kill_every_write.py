"""A pipeline run stopped right after *each* of its writes, then resumed: the same result,
the same final weights (bit for bit) and the same log as an uninterrupted run.

The stop is injected through ``kprune.io._after_write`` (called after every completed atomic
write and log append), so every window between two writes is tried, not a random sample.
"""

import json
import os

import numpy as np
import pytest

import keras
import kprune.io as kio
import kprune.runner.pipeline as pipeline

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist")
                                 and not os.environ.get("KPRUNE_DATA_DIR"), reason="needs Fashion-MNIST")]

RECIPE = {
    "name": "kill-every-write", "seed": 5,
    "model": {"name": "lenet300_100", "width": 0.1},
    "data": {"name": "fashion_mnist", "batch_size": 64, "take": 128, "test_take": 128},
    "train": {"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}},
    "prune": {"criterion": "l1", "granularity": "filter",
              "schedule": {"name": "agp", "start_epoch": 0, "end_epoch": 2, "frequency": 1},
              "config_list": [{"op_types": ["Dense"], "sparsity": 0.5},
                              {"op_names": ["predictions"], "exclude": True}]},
    "finetune": {"epochs": 2, "optimizer": {"name": "sgd", "learning_rate": 0.02, "momentum": 0.9}},
    "export": {"enabled": False},
}
VOLATILE = ("seconds", "machine", "time")


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the pipeline catches it."""


def _log(out):
    with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    return [_drop(r) for r in lines]


def _drop(obj):
    if isinstance(obj, dict):
        return {k: _drop(v) for k, v in obj.items() if k not in VOLATILE}
    return obj


def _weights(out):
    return keras.saving.load_model(os.path.join(out, "model.keras")).get_weights()


def test_a_kill_after_any_write_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    writes = []
    monkeypatch.setattr(kio, "_after_write", lambda path: writes.append(os.path.relpath(path, ref_out)))
    ref_out = str(tmp_path / "reference")
    reference = _drop(pipeline.run(RECIPE, ref_out, verbose=0))
    ref_log, ref_weights = _log(ref_out), _weights(ref_out)
    assert [r["stage"] for r in ref_log] == ["train", "prune", "finetune", "finetune", "done"]
    assert reference["sparsity"]["total"] > 0.3
    assert len(writes) >= 15, writes

    for k in range(1, len(writes) + 1):
        out = str(tmp_path / f"kill{k}")
        count = [0]

        def stop(path, k=k):
            count[0] += 1
            if count[0] == k:
                raise Killed(path)

        monkeypatch.setattr(kio, "_after_write", stop)
        with pytest.raises(Killed):
            pipeline.run(RECIPE, out, verbose=0)
        monkeypatch.setattr(kio, "_after_write", None)
        resumed = _drop(pipeline.run(RECIPE, out, resume=True, verbose=0))
        where = f"killed after write {k} ({writes[k - 1]})"
        assert resumed == reference, where
        assert _log(out) == ref_log, where
        for a, b in zip(_weights(out), ref_weights):
            np.testing.assert_array_equal(a, b, err_msg=where)


def test_resuming_a_finished_run_keeps_one_done_line(tmp_path):
    out = str(tmp_path / "o")
    recipe = dict(RECIPE, train=dict(RECIPE["train"], epochs=0), finetune=dict(RECIPE["finetune"], epochs=1))
    first = pipeline.run(recipe, out, verbose=0)
    again = pipeline.run(recipe, out, resume=True, verbose=0)
    assert again == first
    assert [r["stage"] for r in _log(out)].count("done") == 1
