"""kprune.recalibrate_bn: moving statistics become the batch statistics of the data, nothing else changes."""

import keras
import numpy as np
import pytest

import kprune
from kprune.pruning.batchnorm import batchnorm_layers, recalibrate_bn
from kprune.errors import DataError

EPS = 1e-3  # Keras' BatchNormalization default epsilon


def _model():
    inp = keras.Input((6,))
    h = keras.layers.BatchNormalization(name="bn1")(inp)
    h = keras.layers.Dense(4, activation="relu", name="fc")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    out = keras.layers.Dense(3, name="predictions")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    for v in model.weights:  # stale, non-trivial statistics and weights
        v.assign(rng.normal(size=v.shape).astype("float32"))
    for bn in batchnorm_layers(model):
        bn.moving_variance.assign(np.abs(bn.moving_variance.numpy()) + 0.5)
    return model


def _batches(n=3, size=5):
    rng = np.random.default_rng(2)
    return [(rng.normal(2.0, 3.0, size=(size, 6)).astype("float32"), np.zeros(size, "int32")) for _ in range(n)]


def _reference(model, batches):
    """Hand computation in numpy: per-batch biased moments in training mode, averaged."""
    bn1, fc, bn2 = (model.get_layer(n) for n in ("bn1", "fc", "bn2"))
    g1, b1 = bn1.gamma.numpy(), bn1.beta.numpy()
    w, b = fc.kernel.numpy(), fc.bias.numpy()
    m1, v1, m2, v2 = [], [], [], []
    for x, _ in batches:
        mu, var = x.mean(0), x.var(0)
        m1.append(mu)
        v1.append(var)
        h = np.maximum(((x - mu) / np.sqrt(var + EPS) * g1 + b1) @ w + b, 0.0)
        m2.append(h.mean(0))
        v2.append(h.var(0))
    return [np.mean(a, axis=0) for a in (m1, v1, m2, v2)]


def test_moving_stats_equal_the_batch_statistics_and_nothing_else_changes():
    model = _model()
    data = _batches()
    others = {v.path: v.numpy().copy() for v in model.weights if "moving" not in v.path}
    momenta = [bn.momentum for bn in batchnorm_layers(model)]
    assert recalibrate_bn(model, data, batches=3) == 3
    m1, v1, m2, v2 = _reference(model, data)
    bn1, bn2 = model.get_layer("bn1"), model.get_layer("bn2")
    np.testing.assert_allclose(bn1.moving_mean.numpy(), m1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), v1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn2.moving_mean.numpy(), m2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn2.moving_variance.numpy(), v2, rtol=1e-4, atol=1e-5)
    for v in model.weights:
        if "moving" not in v.path:
            np.testing.assert_array_equal(v.numpy(), others[v.path])
    assert [bn.momentum for bn in batchnorm_layers(model)] == momenta


def test_one_batch_gives_exactly_its_statistics_and_batches_caps_the_data():
    model = _model()
    data = _batches(n=4)
    assert recalibrate_bn(model, data, batches=1) == 1
    x = data[0][0]
    np.testing.assert_allclose(model.get_layer("bn1").moving_mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_layer("bn1").moving_variance.numpy(), x.var(0), rtol=1e-5, atol=1e-6)
    assert recalibrate_bn(model, data, batches=10) == 4  # data ends first


def test_frozen_batchnorm_is_recalibrated_and_stays_frozen():
    model = _model()
    model.get_layer("bn1").trainable = False
    data = _batches(n=2)
    recalibrate_bn(model, data, batches=2)
    m1, v1, _, _ = _reference(model, data)
    np.testing.assert_allclose(model.get_layer("bn1").moving_mean.numpy(), m1, rtol=1e-5, atol=1e-5)
    assert model.get_layer("bn1").trainable is False


def test_wrapped_and_nested_models():
    inp = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 3, name="conv1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(3, name="predictions")(h)
    plain = keras.Model(inp, out)
    wrapped = kprune.wrap(plain, {"prune": {"criterion": "l1", "granularity": "filter",
                                            "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}})
    kprune.Pruner(wrapped).prune_now()
    bns = batchnorm_layers(wrapped)
    assert [bn.name for bn in bns] == ["bn1"]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 8, 8, 2)).astype("float32")
    before = {v.path: v.numpy().copy() for v in wrapped.weights if "moving" not in v.path}
    recalibrate_bn(wrapped, [x], batches=1)
    conv = bns[0]  # reference: the (masked) conv output's per-channel moments
    sub = keras.Model(wrapped.input, wrapped.get_layer("conv1").output)
    y = np.asarray(sub(x, training=False))
    np.testing.assert_allclose(conv.moving_mean.numpy(), y.mean((0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(conv.moving_variance.numpy(), y.var((0, 1, 2)), rtol=1e-4, atol=1e-6)
    assert np.sum(conv.moving_variance.numpy() == 0.0) == 2  # the two pruned filters output zeros
    for v in wrapped.weights:
        if "moving" not in v.path:
            np.testing.assert_array_equal(v.numpy(), before[v.path])
    # a model nested inside another
    outer_in = keras.Input((8, 8, 2))
    outer = keras.Model(outer_in, plain(outer_in))
    assert [bn.name for bn in batchnorm_layers(outer)] == ["bn1"]
    recalibrate_bn(outer, [(x, None)], batches=1)
    y = np.asarray(keras.Model(plain.input, plain.get_layer("conv1").output)(x))
    np.testing.assert_allclose(plain.get_layer("bn1").moving_mean.numpy(), y.mean((0, 1, 2)), rtol=1e-5, atol=1e-6)


def test_errors_and_no_batchnorm():
    model = _model()
    with pytest.raises(DataError, match="batches"):
        recalibrate_bn(model, _batches(), batches=0)
    with pytest.raises(DataError, match="no batch"):
        recalibrate_bn(model, [], batches=2)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert recalibrate_bn(plain, [np.ones((2, 3), "float32")], batches=2) == 0
    assert kprune.recalibrate_bn is recalibrate_bn


def test_pipeline_reports_accuracy_with_and_without_recalibration(tmp_path):
    import json
    import os

    from kprune.models import training
    from kprune.runner import pipeline
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("needs Debian's dataset-fashion-mnist")
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, name="conv1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="predictions")(h))
    model.get_layer("bn1").moving_mean.assign(np.full(8, 5.0, "float32"))  # stale statistics
    path = str(tmp_path / "bn.keras")
    model.save(path)
    recipe = {"model": {"name": path}, "data": {"name": "fashion_mnist", "batch_size": 32, "take": 128, "test_take": 64},
              "prune": {"criterion": "l1", "granularity": "filter", "recalibrate_bn": 2,
                        "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]},
              "export": {"enabled": False}}
    result = pipeline.run(recipe, tmp_path / "run", verbose=0)
    perf = result["performance"]
    assert set(perf) == {"original", "pruned", "pruned_recalibrated", "speedup", "finetuned"}
    pruned = keras.saving.load_model(str(tmp_path / "run" / "ckpt" / "pruned.keras"))
    bn = batchnorm_layers(pruned)[0]
    assert np.all(bn.moving_mean.numpy() < 5.0)  # the stale 5.0 was replaced
    test = pipeline.Run(kprune.Recipe.from_dict(recipe), tmp_path / "x").dataset("test")
    assert perf["pruned_recalibrated"] == training.accuracy(pruned, test) == perf["finetuned"]
    assert json.loads((tmp_path / "run" / "result.json").read_text())["performance"] == perf
    recipe["prune"]["recalibrate_bn"] = 0
    off = pipeline.run(recipe, tmp_path / "off", verbose=0)["performance"]
    assert "pruned_recalibrated" not in off and off["pruned"] == perf["pruned"]
