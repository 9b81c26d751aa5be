import keras
import numpy as np
import pytest

import kprune
from kprune.errors import KPruneError, UnsupportedLayerError


def small_cnn():
    inp = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(3, name="fc")(x)
    return keras.Model(inp, out, name="small")


LEVEL = {"prune": {"criterion": "level", "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.5}]}}


def test_wrap_keeps_weights_names_and_outputs():
    m = small_cnn()
    w = kprune.wrap(m, LEVEL)
    assert [l.name for l in w.layers] == [l.name for l in m.layers]
    assert isinstance(w.get_layer("conv1"), kprune.PruneWrapper)
    assert not isinstance(w.get_layer("bn1"), kprune.PruneWrapper)  # weight granularity: no followers
    x = np.random.rand(2, 8, 8, 2).astype("float32")
    np.testing.assert_allclose(w(x), m(x), atol=1e-6)
    assert w.get_layer("conv1") is not m.get_layer("conv1")  # the input model is untouched


def test_masks_are_non_trainable_and_pruning_is_exact():
    w = kprune.wrap(small_cnn(), LEVEL)
    conv = w.get_layer("conv1")
    assert all(not v.trainable for v in conv.masks.values())
    kernel = conv.layer.kernel.numpy().copy()
    kprune.Pruner(w).prune_now()
    # exactly half of the kernel entries, the smallest |w|, are zero
    k = conv.layer.kernel.numpy()
    n = kernel.size
    assert np.sum(k == 0) == n // 2
    threshold = np.sort(np.abs(kernel).ravel())[n // 2 - 1]
    assert np.all(np.abs(kernel[k == 0]) <= threshold)
    np.testing.assert_array_equal(conv.masks["kernel"].numpy() == 0, k == 0)
    assert kprune.sparsity(w)["conv1"] == 0.5


def test_masked_weights_stay_zero_through_training_and_jit():
    w = kprune.wrap(small_cnn(), LEVEL)
    kprune.Pruner(w).prune_now()
    before = w.get_layer("fc").masks["kernel"].numpy().copy()
    w.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy", jit_compile=True)
    x = np.random.rand(16, 8, 8, 2).astype("float32")
    y = np.random.randint(0, 3, 16)
    w.fit(x, y, epochs=2, batch_size=8, verbose=0)
    k = w.get_layer("fc").layer.kernel.numpy()
    assert np.all(k[before == 0] == 0)
    assert np.all(k[before == 1] != 0)


def test_save_load_without_custom_objects(tmp_path):
    w = kprune.wrap(small_cnn(), LEVEL)
    w.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.rand(8, 8, 8, 2).astype("float32")
    w.fit(x, np.zeros(8), epochs=1, verbose=0, callbacks=[kprune.PruningCallback()])
    path = tmp_path / "w.keras"
    w.save(path)
    again = keras.saving.load_model(path)
    assert isinstance(again.get_layer("conv1"), kprune.PruneWrapper)
    assert again.get_layer("conv1").spec == w.get_layer("conv1").spec
    assert int(again.get_layer("conv1").pruning_step.numpy()) == 1
    np.testing.assert_array_equal(again.get_layer("fc").masks["kernel"].numpy(),
                                  w.get_layer("fc").masks["kernel"].numpy())
    np.testing.assert_allclose(again(x), w(x), atol=1e-6)
    # masks keep holding after reload (constraints re-installed)
    assert again.get_layer("fc").layer.kernel.constraint is not None


def test_strip_bakes_masks_and_removes_wrappers():
    w = kprune.wrap(small_cnn(), LEVEL)
    kprune.Pruner(w).prune_now()
    s = kprune.strip(w)
    assert not any(isinstance(l, kprune.PruneWrapper) for l in s.layers)
    x = np.random.rand(2, 8, 8, 2).astype("float32")
    np.testing.assert_allclose(s(x), w(x), atol=1e-6)
    assert kprune.sparsity(s)["conv1"] == 0.5


def test_nested_model_inside_sequential():
    inner = small_cnn()
    outer = keras.Sequential([keras.Input((8, 8, 2)), inner, keras.layers.Dense(2, name="head")])
    w = kprune.wrap(outer, {"prune": {"config_list": [{"op_names": ["conv1", "head"], "sparsity": 0.5}]}})
    kprune.Pruner(w).prune_now()
    sp = kprune.sparsity(w)
    assert sp["conv1"] == 0.5 and sp["head"] == 0.5 and sp["fc"] == 0.0


def test_selector_errors():
    m = small_cnn()
    with pytest.raises(UnsupportedLayerError, match=r"bn1.*BatchNormalization.*Prunable types"):
        kprune.wrap(m, {"prune": {"config_list": [{"op_names_re": ["bn.*|conv.*"], "sparsity": 0.5}]}})
    with pytest.raises(KPruneError, match="matched no layer"):
        kprune.wrap(m, {"prune": {"config_list": [{"op_types": ["Conv3D"], "sparsity": 0.5}]}})
    with pytest.raises(KPruneError, match="no layer named `conv9`"):
        kprune.wrap(m, {"prune": {"config_list": [{"op_names": ["conv9"], "sparsity": 0.5}]}})
    with pytest.raises(UnsupportedLayerError, match="already wrapped"):
        kprune.wrap(kprune.wrap(m, LEVEL), LEVEL)


def test_exclude_and_last_entry_wins():
    w = kprune.wrap(small_cnn(), {"prune": {"config_list": [
        {"op_types": ["Conv2D", "Dense"], "sparsity": 0.5},
        {"op_names": ["fc"], "sparsity": 0.25},
        {"op_names": ["conv1"], "exclude": True}]}})
    assert not isinstance(w.get_layer("conv1"), kprune.PruneWrapper)
    assert w.get_layer("fc").spec["sparsity"] == 0.25


def test_global_level_scope():
    w = kprune.wrap(small_cnn(), {"prune": {"scope": "global", "config_list": [
        {"op_types": ["Conv2D", "Dense"], "total_sparsity": 0.8}]}})
    kprune.Pruner(w).prune_now()
    sp = kprune.sparsity(w)
    total = w.get_layer("conv1").layer.kernel.shape.num_elements() if hasattr(
        w.get_layer("conv1").layer.kernel.shape, "num_elements") else None
    assert sp["total"] == pytest.approx(0.8, abs=1e-3)
    assert sp["conv1"] != sp["fc"]  # global ranking allocates differently per layer
    del total


def test_subclassed_model_error_says_what_to_do():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedLayerError, match="functional API.*PruneWrapper"):
        kprune.wrap(net, LEVEL)
