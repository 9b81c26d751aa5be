"""Tiny models and cheap deterministic evaluators shared by the search tests."""

import json

import keras
import numpy as np
import pytest

# exact channel counts: under the default round_to: auto the tiny model's 16-channel layers could
# only keep 8 or 16, too coarse for the searches these tests exercise
PRUNE = {"criterion": "l1", "granularity": "filter", "round_to": 1,
         "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}


def tiny_cnn(seed: int = 0):
    """3-conv CNN on 12x12x3 inputs: conv(8)-bn-relu, conv(16)-relu, conv(16, stride 2), GAP, dense(4)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3), name="x")
    h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="r1")(h)
    h = keras.layers.Conv2D(16, 3, padding="same", name="c2")(h)
    h = keras.layers.ReLU(name="r2")(h)
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c3")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(4, name="fc")(h)
    return keras.Model(inp, out, name="tiny_cnn")


class OutputMatch:
    """Score = minus the mean squared difference to the dense model's outputs on fixed inputs.

    ``fail_after`` makes the evaluator raise after that many calls (a simulated interruption).
    """

    def __init__(self, model, fail_after=None, seed=0):
        self.x = np.random.default_rng(seed).normal(size=(16,) + tuple(model.input.shape[1:])).astype("float32")
        self.ref = np.asarray(model(self.x))
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, model):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated interruption")
        self.calls += 1
        return -float(np.mean((np.asarray(model(self.x)) - self.ref) ** 2))


def strip_times(trajectory):
    """The trajectory without wall-clock fields (for run-to-run comparisons)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in trajectory]


RECORD_KEYS = {"index", "tag", "allocation", "cost", "score", "accepted", "finetune_steps", "rng", "seconds"}


def scale_weights(model, steps, seed):
    """A deterministic, picklable stand-in for fine-tuning: scales every trainable weight by a
    seed-dependent factor (zeros stay zero)."""
    for v in model.trainable_variables:
        v.assign(v * (1.0 - 0.01 * (1 + (seed + steps) % 7)))


class Distill:
    """Deterministic training: SGD on MSE to the dense model's outputs on fixed inputs.

    Compiled once per model (the train step is traced once); ``model.fit`` adds ``model.losses``,
    so the ADMM penalty is part of the loss.
    """

    def __init__(self, model, seed=1):
        self.x = np.random.default_rng(seed).normal(size=(32,) + tuple(model.input.shape[1:])).astype("float32")
        self.y = np.asarray(model(self.x))
        self.compiled = set()
        self.calls = []

    def __call__(self, model, steps, seed):
        self.calls.append((steps, seed))
        if id(model) not in self.compiled:
            model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=False)
            self.compiled.add(id(model))
        keras.utils.set_random_seed(seed)
        model.fit(self.x, self.y, batch_size=8, epochs=steps // 4, shuffle=False, verbose=0)


def resume_after_cut(run, model, out_dir, cut, **kw):
    """Interrupts ``run`` (raising from the evaluator after ``cut`` evaluations), then resumes
    it in ``out_dir`` with a fresh evaluator and a fresh :class:`Distill` trainer.

    Returns:
        ``(checkpoint dict at the cut, resumed result, fresh evaluator, fresh trainer)``.
    """
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run(model, out_dir=out_dir, evaluator=OutputMatch(model, fail_after=cut), **kw)
    saved = json.loads((out_dir / "checkpoint.json").read_text())
    assert len(saved["trajectory"]) == cut
    fresh, trainer = OutputMatch(model), Distill(model)
    resumed = run(model, out_dir=out_dir, resume=True, evaluator=fresh, finetune=trainer, **kw)
    return saved, resumed, fresh, trainer


def saved_trajectory(out_dir, algorithm: str, evaluations: int) -> list:
    """The records of ``out_dir/trajectory.json``, checked: algorithm name, count, keys, indices."""
    data = json.loads((out_dir / "trajectory.json").read_text())
    assert data["algorithm"]["name"] == algorithm and len(data["trajectory"]) == evaluations
    for i, rec in enumerate(data["trajectory"]):
        assert set(rec) >= RECORD_KEYS and rec["index"] == i
    return data["trajectory"]
