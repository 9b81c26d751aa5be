"""``finetune.distill`` in the pipeline: the dense model teaches the pruned one; the result
compacts; an interrupted distilled fine-tuning resumes with its optimizer state."""

import os

import keras
import numpy as np
import pytest

import kprune.io
from kprune.runner import pipeline

pytestmark = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist")
                                and not os.environ.get("KPRUNE_DATA_DIR"), reason="needs Fashion-MNIST")


def _model(path):
    keras.utils.set_random_seed(0)
    x = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="c1")(x)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    keras.Model(x, keras.layers.Dense(10, name="predictions")(h)).save(path)
    return path


def _recipe(path, distill):
    return {"name": "distill", "seed": 0, "model": {"name": path},
            "data": {"name": "fashion_mnist", "batch_size": 32, "take": 128, "test_take": 64},
            "train": {"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.05}},
            "prune": {"criterion": "l1", "granularity": "filter",
                      "config_list": [{"op_names": ["c1", "c2"], "sparsity": 0.5}]},
            "finetune": {"epochs": 2, "optimizer": {"name": "sgd", "learning_rate": 0.05}, "lr_schedule": "cosine",
                         "distill": distill},
            "export": {"enabled": False}}


def _log(out):
    import json
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def _final(out):
    return keras.saving.load_model(os.path.join(out, "model.keras")).get_weights()


def test_distilled_fine_tuning_in_the_pipeline_and_its_resume(tmp_path, monkeypatch):
    path = _model(str(tmp_path / "m.keras"))
    kd = {"alpha": 0.5, "temperature": 4.0}
    plain = pipeline.run(_recipe(path, None), str(tmp_path / "plain"), verbose=0)
    result = pipeline.run(_recipe(path, kd), str(tmp_path / "kd"), verbose=0)
    assert result["distill"] == kd and plain["distill"] is None
    epochs = [e for e in _log(tmp_path / "kd") if e.get("stage") == "finetune"]
    assert len(epochs) == 2 and all("distillation_loss" in e and "student_loss" in e for e in epochs)
    assert not any("distillation_loss" in e for e in _log(tmp_path / "plain"))
    # the same pruned architecture; the training differed
    assert result["params"]["speedup"] == plain["params"]["speedup"] < plain["params"]["original"]
    assert max(np.abs(a - b).max() for a, b in zip(_final(tmp_path / "kd"), _final(tmp_path / "plain"))) > 1e-4
    # the compacted model computes what the fine-tuned masked one does
    assert result["performance"]["speedup"] == result["performance"]["finetuned"]
    assert os.listdir(tmp_path / "kd" / "ckpt").count("finetune-e2.optimizer.npz") == 1

    # killed right after the first fine-tuning epoch is committed, then resumed
    class Killed(Exception):
        pass

    def kill(written):
        if written.endswith("state.json") and os.path.exists(tmp_path / "cut" / "ckpt" / "finetune-e1.keras"):
            raise Killed

    monkeypatch.setattr(kprune.io, "_after_write", kill)
    with pytest.raises(Killed):
        pipeline.run(_recipe(path, kd), str(tmp_path / "cut"), verbose=0)
    monkeypatch.setattr(kprune.io, "_after_write", None)
    assert os.path.exists(tmp_path / "cut" / "ckpt" / "finetune-e1.optimizer.npz")
    resumed = pipeline.run(_recipe(path, kd), str(tmp_path / "cut"), resume=True, verbose=0)
    assert resumed["performance"] == result["performance"]
    for a, b in zip(_final(tmp_path / "cut"), _final(tmp_path / "kd")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
