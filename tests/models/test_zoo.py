"""Tests of kprune.models: every zoo model builds, runs, scales and resolves by name."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from kprune import models
from kprune.errors import KPruneError
from kprune.models import applications
from kprune.models.registry import scale

ZOO = ["vgg16", "vgg19", "resnet18", "resnet50", "resnet20", "resnet56", "mobilenetv2", "lenet5", "lenet300_100"]


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_names_lists_the_zoo():
    assert sorted(ZOO) == models.names()


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_builds_and_runs_at_cifar_and_fashion_mnist_shapes(name, shape):
    model = models.get(name, input_shape=shape, num_classes=7)
    assert model.input_shape == (None,) + shape
    out = model(np.random.default_rng(0).normal(size=(2,) + shape).astype("float32"))
    assert tuple(out.shape) == (2, 7)
    assert np.all(np.isfinite(np.asarray(out)))


def test_scale_rounds_half_up_and_keeps_at_least_one():
    assert scale(64, 1.0) == 64
    assert scale(64, 0.5) == 32
    assert scale(6, 0.25) == 2  # 1.5 -> 2 (half up)
    assert scale(100, 0.125) == 13  # 12.5 -> 13
    assert scale(16, 0.1) == 2  # 1.6 -> 2
    assert scale(3, 0.1) == 1  # 0.3 -> 0 -> at least 1


def test_width_scales_every_channel_count():
    r = models.get("resnet20", width=0.5)
    assert r.get_layer("conv1").filters == 8
    assert r.get_layer("stage2_block1_conv1").filters == 16
    assert r.get_layer("stage3_block3_conv2").filters == 32
    assert r.get_layer("stage3_block1_shortcut_conv").filters == 32
    v = models.get("vgg16", width=0.25)
    assert [v.get_layer(f"conv{i}").filters for i in (1, 3, 5, 8, 13)] == [16, 32, 64, 128, 128]
    assert v.get_layer("fc1").units == 128
    assert models.get("vgg16", width=0.25, hidden_units=512).get_layer("fc1").units == 512
    m = models.get("mobilenetv2", width=0.5)
    assert m.get_layer("conv1").filters == 16
    assert m.get_layer("block2_expand").filters == 8 * 6  # block2 input is scale(16, .5) = 8
    assert m.get_layer("conv_last").filters == 640
    le = models.get("lenet5", input_shape=(28, 28, 1), width=0.5)
    assert [le.get_layer(n).filters for n in ("conv1", "conv2")] == [3, 8]
    assert [le.get_layer(n).units for n in ("fc1", "fc2", "predictions")] == [60, 42, 10]
    mlp = models.get("lenet300_100", input_shape=(28, 28, 1), width=2.0)
    assert [mlp.get_layer(n).units for n in ("fc1", "fc2")] == [600, 200]
    b = models.get("resnet50", width=0.25)
    assert b.get_layer("stage4_block1_conv3").filters == 512  # 4 * scale(512, .25)


def test_vgg16_matches_nni_parameter_counts():
    model = models.get("vgg16")
    # NNI's CIFAR VGG-16 (13 conv without bias + BN, Dense 512 + BN + Dense 10):
    # 14,987,722 parameters in PyTorch, which does not count BN running statistics.
    assert trainable_count(model) == 14_987_722
    # Keras also counts moving mean and variance: 2 * (4,224 conv-BN + 512 fc-BN) more.
    assert model.count_params() == 14_987_722 + 2 * (4224 + 512)
    # NNI's L1 pruner at sparsity 0.5 halves every conv; its table lists 3,820,010 params.
    half = models.get("vgg16", width=0.5, hidden_units=512)
    assert trainable_count(half) == 3_820_010


def test_cifar_resnet_parameter_counts():
    # The CIFAR ResNet-18/50 of NNI's comparison have 11,173,962 and 23,520,842 parameters.
    assert trainable_count(models.get("resnet18")) == 11_173_962
    assert trainable_count(models.get("resnet50")) == 23_520_842
    # ResNet-20 with option-B shortcuts: 0.27 M.
    assert trainable_count(models.get("resnet20")) == 272_474


def test_lenet_parameter_counts():
    assert models.get("lenet5", input_shape=(28, 28, 1)).count_params() == 61_706
    # 784*300+300 + 300*100+100 + 100*10+10
    assert models.get("lenet300_100", input_shape=(28, 28, 1)).count_params() == 266_610


def test_mobilenetv2_residuals_and_depthwise():
    m = models.get("mobilenetv2")
    adds = [l for l in m.layers if isinstance(l, keras.layers.Add)]
    assert len(adds) == 10  # stride-1 blocks whose input and output widths match
    assert sum(isinstance(l, keras.layers.DepthwiseConv2D) for l in m.layers) == 17


def test_unknown_name_lists_the_zoo_and_mentions_applications():
    with pytest.raises(KPruneError) as err:
        models.get("resnet21")
    msg = str(err.value)
    assert "resnet21" in msg and "vgg16" in msg and "lenet300_100" in msg
    assert "keras.applications" in msg and ".keras" in msg


@pytest.mark.parametrize(
    "kwargs",
    [{"width": 0}, {"width": -1.0}, {"width": "half"}, {"num_classes": 0}, {"input_shape": (32, -1, 3)}],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(KPruneError):
        models.get("lenet5", **kwargs)


def test_keras_file_round_trip(tmp_path):
    model = models.get("lenet300_100", input_shape=(28, 28, 1), num_classes=10)
    path = str(tmp_path / "mlp.keras")
    model.save(path)
    loaded = models.get(path)
    x = np.random.default_rng(1).normal(size=(3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)
    with pytest.raises(KPruneError, match="not found"):
        models.get(str(tmp_path / "missing.keras"))


def test_keras_applications_by_name():
    model = models.get("MobileNet", input_shape=(32, 32, 3), num_classes=5)
    assert model.name.startswith("mobilenet")
    assert tuple(model(np.zeros((1, 32, 32, 3), "float32")).shape) == (1, 5)
    assert applications.resolve("keras.applications.resnet50") == "ResNet50"
    assert applications.resolve("ResNet50", case_sensitive=True) == "ResNet50"
    assert applications.resolve("mobilenetv2") == "MobileNetV2"
    assert applications.resolve("nonet") is None


def test_zoo_name_wins_over_case_insensitive_application():
    assert models.get("resnet20").name == "resnet20"
    # lower-case "mobilenetv2" is the CIFAR zoo model; "keras.applications.mobilenetv2" is Keras'.
    assert models.get("mobilenetv2").name == "mobilenetv2"
    app = models.get("keras.applications.mobilenetv2", input_shape=(32, 32, 3), num_classes=3, width=0.35)
    assert app.name.startswith("mobilenetv2_0.35")


def test_application_width_without_alpha_is_an_error():
    with pytest.raises(KPruneError, match="alpha"):
        models.get("ResNet50", width=0.5)
