"""Fine-tuning with distillation (kprune.models.distill, on keras.distillation)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kprune
from kprune.models import distill


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu", name="h")(x)
    return keras.Model(x, keras.layers.Dense(4, name="out")(h))


def _data(seed=0, n=64, labels=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = rng.integers(0, 4, n) if labels is None else labels
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16), x


def _fit(student, teacher, ds, alpha):
    keras.utils.set_random_seed(1)
    distill.distill_finetune(student, teacher, ds, epochs=2, alpha=alpha, temperature=3.0,
                             optimizer=keras.optimizers.SGD(0.1))
    return student.get_weights()


def test_logits_distillation_is_hinton_kl_with_an_instance_not_with_keras_default_string():
    t = np.array([[2.0, 0.0, -1.0]], "float32")
    s = np.array([[0.0, 1.0, 3.0]], "float32")
    T = 2.0
    pt, ps = (np.exp(v / T) / np.exp(v / T).sum() for v in (t, s))
    reference = T ** 2 * float((pt * np.log(pt / ps)).sum())
    ours = keras.distillation.LogitsDistillation(temperature=T, loss=keras.losses.KLDivergence())
    assert float(ours.compute_loss(t, s)) == pytest.approx(reference, rel=1e-5)
    # why kprune passes an instance: Keras 3.15.1's default string resolves to the function
    # kl_divergence, which LogitsDistillation applies to the raw (clipped) logits
    default = keras.distillation.LogitsDistillation(temperature=T)
    assert abs(float(default.compute_loss(t, s)) - reference) > 1.0


def test_alpha_one_is_plain_fine_tuning_and_distillation_changes_training():
    teacher = distill.frozen_copy(_mlp(seed=5))
    ds, _ = _data()
    plain = _mlp()
    keras.utils.set_random_seed(1)
    plain.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(ds, epochs=2, verbose=0)
    w1 = _fit(_mlp(), teacher, ds, alpha=1.0)
    for a, b in zip(plain.get_weights(), w1):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    w_half = _fit(_mlp(), teacher, ds, alpha=0.5)
    assert max(np.abs(a - b).max() for a, b in zip(w1, w_half)) > 1e-3


def test_alpha_zero_learns_from_the_teacher_only():
    teacher = distill.frozen_copy(_mlp(seed=5))
    ds_a, _ = _data(labels=np.zeros(64, "int64"))
    ds_b, _ = _data(labels=np.full(64, 3, "int64"))
    wa, wb = _fit(_mlp(), teacher, ds_a, alpha=0.0), _fit(_mlp(), teacher, ds_b, alpha=0.0)
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    w_half = _fit(_mlp(), teacher, ds_a, alpha=0.5)  # with labels in the loss they matter
    assert max(np.abs(a - b).max() for a, b in zip(wa, w_half)) > 1e-3


def test_distill_loss_is_logged_and_matches_the_formula_at_the_start():
    teacher, student = distill.frozen_copy(_mlp(seed=5)), _mlp()
    ds, x = _data(n=16)
    hist = distill.distill_finetune(student, teacher, ds, epochs=1, alpha=0.25, temperature=2.0,
                                    optimizer=keras.optimizers.SGD(0.0))
    T, lt, ls = 2.0, np.asarray(teacher(x)) / 2.0, np.asarray(student(x)) / 2.0
    pt = np.exp(lt) / np.exp(lt).sum(-1, keepdims=True)
    ps = np.exp(ls) / np.exp(ls).sum(-1, keepdims=True)
    kl = T ** 2 * float(np.mean((pt * np.log(pt / ps)).sum(-1)))
    assert hist.history["distillation_loss"][0] == pytest.approx(kl, rel=1e-4)
    total = 0.25 * hist.history["student_loss"][0] + 0.75 * kl
    assert hist.history["total_loss"][0] == pytest.approx(total, rel=1e-4)


def test_bad_alpha_and_temperature_are_refused():
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]. Received: alpha=1.5"):
        distill.make_distiller(_mlp(), _mlp(), alpha=1.5)
    with pytest.raises(ValueError, match="temperature must be > 0. Received: temperature=0"):
        distill.make_distiller(_mlp(), _mlp(), temperature=0)


def _cnn():
    keras.utils.set_random_seed(0)
    x = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="c2")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(4, name="out")(h))


def test_the_pruned_student_keeps_its_masks_and_compacts_to_the_same_function():
    dense = _cnn()
    teacher = distill.frozen_copy(dense)
    pruned = kprune.wrap(dense, {"prune": {"criterion": "l1", "granularity": "filter",
                                           "config_list": [{"op_names": ["c1", "c2"], "sparsity": 0.5}]}})
    kprune.Pruner(pruned).prune_now()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 12, 12, 1)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 4, 32))).batch(8)
    wrappers = kprune.wrappers.find_wrappers(pruned)
    before = {(w.name, a): np.asarray(m).copy() for w in wrappers for a, m in w.masks.items()}
    assert any((m == 0).any() for m in before.values())
    teacher_w = [w.copy() for w in teacher.get_weights()]
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model)

    hist = kprune.distill_finetune(pruned, teacher, ds, epochs=2, optimizer=keras.optimizers.SGD(0.05),
                                   callbacks=[kprune.PruningCallback(), Spy()])
    assert seen == [pruned]  # callbacks see the student, not the Distiller
    assert "distillation_loss" in hist.history and "sparsity" in hist.history
    for w in wrappers:  # same masks, and the masked weights are still exactly zero
        for attr, var in w.weights_by_attr().items():
            mask = before[(w.name, attr)]
            np.testing.assert_array_equal(np.asarray(w.masks[attr]), mask)
            assert np.all(np.asarray(var)[mask == 0] == 0), (w.name, attr)
    for a, b in zip(teacher.get_weights(), teacher_w):  # the teacher is not trained
        np.testing.assert_array_equal(a, b)
    small = kprune.compact(pruned)
    assert small.get_layer("c1").filters == 4
    np.testing.assert_allclose(np.asarray(small(x)), np.asarray(pruned(x)), rtol=1e-4, atol=1e-5)
