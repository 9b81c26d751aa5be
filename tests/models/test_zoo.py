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

ZOO = ["vgg16", "vgg19", "resnet18", "resnet50", "resnet20", "resnet56", "mobilenetv2", "lenet5", "lenet300_100",
       "vit"]


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


# -- issue 19: PyTorch-style padding of strided convolutions and the reference initialisations --


def _conv_reference(x, kernel, stride, pad):
    """Numpy convolution as torch.nn.functional.conv2d(padding=pad) computes it, NHWC / HWIO."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = kernel.shape[0]
    h = (xp.shape[1] - k) // stride + 1
    w = (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _segment(model, first, last):
    return keras.Model(model.get_layer(first).input, model.get_layer(last).output)


@pytest.mark.parametrize("size", [8, 7])
def test_strided_resnet_conv_pads_like_torch(size):
    model = models.get("resnet20", input_shape=(size, size, 1), width=0.25)
    branch = _segment(model, "stage2_block1_pad1", "stage2_block1_conv1")
    assert model.get_layer("stage2_block1_pad1").padding == ((1, 1), (1, 1))
    assert model.get_layer("stage2_block1_conv1").padding == "valid"
    x = np.random.default_rng(0).normal(size=(2, size, size, 4)).astype("float32")
    kernel = np.asarray(model.get_layer("stage2_block1_conv1").kernel)
    got = np.asarray(branch(x))
    np.testing.assert_allclose(got, _conv_reference(x, kernel, 2, 1), rtol=1e-4, atol=1e-5)
    # output size as torch's floor((size + 2 - 3) / 2) + 1, the same as Keras' `same`
    assert got.shape[1] == (size + 2 - 3) // 2 + 1 == -(-size // 2)
    # the pre-issue-19 layout pads bottom/right only and computes something else
    old = models.get("resnet20", input_shape=(size, size, 1), width=0.25, strided_padding="same")
    assert not any(isinstance(l, keras.layers.ZeroPadding2D) for l in old.layers)
    old.get_layer("stage2_block1_conv1").kernel.assign(kernel)
    old_out = np.asarray(keras.Model(old.get_layer("stage2_block1_conv1").input,
                                     old.get_layer("stage2_block1_conv1").output)(x))
    if size % 2 == 0:  # Keras pads 0 top/left, 1 bottom/right: the grid is shifted by one pixel
        np.testing.assert_allclose(old_out, _conv_reference(np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0))), kernel, 2, 0),
                                   rtol=1e-4, atol=1e-5)
        assert np.abs(old_out - got).max() > 1e-2
    else:  # odd sizes: `same` pads 2 in total, 1 on each side, as torch does
        np.testing.assert_allclose(old_out, got, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,conv,pad", [("resnet20", "stage2_block1_conv1", "stage2_block1_pad1"),
                                           ("resnet50", "stage2_block1_conv2", "stage2_block1_pad2")])
def test_strided_branch_centre_is_aligned_with_the_1x1_shortcut(name, conv, pad):
    # a kernel whose only tap is the centre makes the 3x3 stride-2 branch sample the same
    # pixels as the 1x1 stride-2 shortcut: x[:, ::2, ::2] (torch's alignment)
    model = models.get(name, input_shape=(8, 8, 3), width=0.125)
    layer = model.get_layer(conv)
    c_in, c_out = layer.kernel.shape[2], layer.kernel.shape[3]
    kernel = np.zeros((3, 3, c_in, c_out), "float32")
    kernel[1, 1, 0, :] = 1.0
    layer.kernel.assign(kernel)
    x = np.random.default_rng(1).normal(size=(1, 8, 8, c_in)).astype("float32")
    out = np.asarray(_segment(model, pad, conv)(x))
    np.testing.assert_allclose(out[..., 0], x[:, ::2, ::2, 0], rtol=1e-6, atol=1e-6)


def test_mobilenetv2_strided_depthwise_pads_like_torch():
    model = models.get("mobilenetv2", input_shape=(8, 8, 3), width=0.25)
    pads = [l.name for l in model.layers if isinstance(l, keras.layers.ZeroPadding2D)]
    assert pads == ["block4_dw_pad", "block7_dw_pad", "block14_dw_pad"]  # the stride-2 blocks (4 = 1 + 2 + 1, ...)
    dw = model.get_layer("block4_dw")
    assert dw.padding == "valid" and dw.strides == (2, 2)
    c = dw.kernel.shape[2]
    x = np.random.default_rng(2).normal(size=(2, 8, 8, c)).astype("float32")
    kernel = np.asarray(dw.kernel)[..., 0]  # (3, 3, C): one filter per channel
    got = np.asarray(_segment(model, "block4_dw_pad", "block4_dw")(x))
    want = np.stack([_conv_reference(x[..., i:i + 1], kernel[:, :, i:i + 1, None], 2, 1)[..., 0]
                     for i in range(c)], axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(l, keras.layers.ZeroPadding2D)
                   for l in models.get("mobilenetv2", width=0.25, strided_padding="same").layers)


def _kernel(model, name):
    return np.asarray(model.get_layer(name).weights[0])


def test_resnet_reference_init_is_kaiming_normal_fan_out_and_torch_default_classifier():
    keras.utils.set_random_seed(0)
    model = models.get("resnet56")
    w = _kernel(model, "stage3_block5_conv2")  # 3x3, 64 -> 64: fan_out 576
    assert abs(w.std() / np.sqrt(2 / 576) - 1) < 0.02
    assert abs(w.mean()) < 0.002
    assert np.abs(w).max() > 2.5 * np.sqrt(2 / 576)  # not truncated at 2 std like Keras' he_normal
    s = _kernel(model, "stage3_block1_shortcut_conv")  # 1x1, 32 -> 64: fan_out 64
    assert abs(s.std() / np.sqrt(2 / 64) - 1) < 0.06
    d = model.get_layer("predictions")
    bound = 1 / np.sqrt(64)
    k, b = np.asarray(d.kernel), np.asarray(d.bias)
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound  # 640 draws of U(-bound, bound)
    assert np.abs(b).max() <= bound and np.all(b != 0)
    assert np.all(np.asarray(model.get_layer("bn1").gamma) == 1.0)


def test_torch_and_keras_init_schemes():
    keras.utils.set_random_seed(0)
    torch_like = models.get("resnet56", init="torch")
    w = _kernel(torch_like, "stage3_block5_conv2")  # fan_in 576
    assert np.abs(w).max() <= 1 / np.sqrt(576) and abs(w.std() * np.sqrt(3 * 576) - 1) < 0.02
    old = models.get("resnet56", init="keras")
    w = _kernel(old, "stage3_block5_conv2")  # Keras he_normal: normal truncated at 2 sigma, std sqrt(2/576)
    sigma = np.sqrt(2 / 576) / 0.87962566103423978  # Keras' correction for the truncation
    assert np.abs(w).max() <= 2 * sigma * 1.0001 and abs(w.std() / np.sqrt(2 / 576) - 1) < 0.02
    d = _kernel(old, "predictions")  # glorot_uniform
    assert np.abs(d).max() <= np.sqrt(6 / (64 + 10)) and np.all(np.asarray(old.get_layer("predictions").bias) == 0)


def test_mobilenetv2_reference_init_uses_torch_fans_for_depthwise():
    keras.utils.set_random_seed(0)
    model = models.get("mobilenetv2")
    dw = _kernel(model, "block16_dw")  # 960 channels, 3x3: torch fan_out = 9 * 960
    assert abs(dw.std() / np.sqrt(2 / (9 * 960)) - 1) < 0.03
    head = model.get_layer("predictions")
    assert abs(np.asarray(head.kernel).std() / 0.01 - 1) < 0.05 and np.all(np.asarray(head.bias) == 0)
    dw_torch = _kernel(models.get("mobilenetv2", init="torch"), "block16_dw")  # fan_in 9
    assert np.abs(dw_torch).max() <= 1 / 3 and np.abs(dw_torch).max() > 0.3


def test_vgg_reference_init_is_nni():
    keras.utils.set_random_seed(0)
    model = models.get("vgg16", width=0.25)
    w = _kernel(model, "conv10")  # 3x3, 128 -> 128: fan_out 1152
    assert abs(w.std() / np.sqrt(2 / 1152) - 1) < 0.02
    assert np.all(np.asarray(model.get_layer("bn3").gamma) == 0.5)
    assert np.all(np.asarray(model.get_layer("fc1_bn").gamma) == 1.0)
    fc = model.get_layer("fc1")
    assert abs(np.asarray(fc.kernel).std() / 0.01 - 1) < 0.05 and np.all(np.asarray(fc.bias) == 0)
    assert np.all(np.asarray(models.get("vgg16", width=0.25, init="torch").get_layer("bn3").gamma) == 1.0)


def test_lenet_reference_init_is_caffe_xavier():
    keras.utils.set_random_seed(0)
    model = models.get("lenet300_100", input_shape=(28, 28, 1))
    w = _kernel(model, "fc1")  # fan_in 784
    limit = np.sqrt(3 / 784)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    assert np.all(np.asarray(model.get_layer("fc1").bias) == 0)
    c = _kernel(models.get("lenet5", input_shape=(28, 28, 1)), "conv2")  # 5x5x6: fan_in 150
    assert np.abs(c).max() <= np.sqrt(3 / 150)


@pytest.mark.parametrize("kwargs,match", [({"init": "xavier"}, "init"), ({"strided_padding": "valid"}, "strided_padding")])
def test_invalid_init_or_padding_names_the_choices(kwargs, match):
    with pytest.raises(KPruneError, match=match) as err:
        models.get("resnet20", **kwargs)
    assert "reference" in str(err.value) or "symmetric" in str(err.value)


def test_initialisation_follows_the_keras_seed():
    keras.utils.set_random_seed(3)
    a = _kernel(models.get("resnet20", width=0.25), "stage2_block1_conv1")
    keras.utils.set_random_seed(3)
    b = _kernel(models.get("resnet20", width=0.25), "stage2_block1_conv1")
    np.testing.assert_array_equal(a, b)
