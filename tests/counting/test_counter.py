"""Tests of kprune.counting.counter against hand-computed references and published numbers."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from kprune import models
from kprune.counting.counter import Counts, count
from kprune.errors import GraphError
from kprune.wrappers.prune_wrapper import PruneWrapper

L = keras.layers


def single(layer, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def row(counts, name):
    (r,) = [r for r in counts.per_layer if r.name == name]
    return r


# ------------------------------------------------------------------ hand-computed layers


def test_conv2d_strided_valid_with_bias_and_relu():
    model = single(L.Conv2D(5, 3, strides=2, activation="relu", name="c"), (10, 12, 3))
    c = count(model)
    r = row(c, "c")
    assert r.output_shape == (None, 4, 5, 5)  # (10-3)//2+1, (12-3)//2+1
    assert r.macs == 4 * 5 * (3 * 3 * 3) * 5 == 2700
    assert r.flops == 5400 and c.flops == 2 * c.macs
    assert r.params == 3 * 3 * 3 * 5 + 5 == 140
    assert r.ops == 4 * 5 * 5 * 2  # bias add + ReLU per output element
    assert c.params == model.count_params()


def test_grouped_conv_and_conv1d_conv3d():
    grouped = count(single(L.Conv2D(6, 3, padding="same", groups=3, use_bias=False), (8, 8, 6)))
    assert grouped.macs == 8 * 8 * (3 * 3 * 2) * 6  # each filter sees 6/3 input channels
    assert grouped.ops == 0
    assert count(single(L.Conv1D(4, 3), (10, 2))).macs == 8 * 3 * 2 * 4
    assert count(single(L.Conv3D(2, 2, use_bias=False), (3, 4, 5, 1))).macs == (2 * 3 * 4) * 8 * 2


def test_channels_first_and_multiple_inputs():
    conv = L.Conv2D(4, 3, data_format="channels_first", use_bias=False)
    assert count(single(conv, (2, 6, 5))).macs == 4 * 3 * (3 * 3 * 2) * 4  # output (4, 4, 3)
    a, b = keras.Input((None, None, 3)), keras.Input((None, None, 3))
    two = keras.Model([a, b], L.Conv2D(2, 1, use_bias=False)(L.Add()([a, b])))
    c = count(two, input_shape=[(4, 5, 3), (4, 5, 3)])
    assert (c.macs, c.ops) == (4 * 5 * 3 * 2, 4 * 5 * 3)


def test_depthwise_conv2d_with_depth_multiplier_2():
    c = count(single(L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw"), (8, 8, 4)))
    r = row(c, "dw")
    assert r.output_shape == (None, 8, 8, 8)
    assert r.macs == 8 * 8 * 3 * 3 * 4 * 2 == 4608
    assert r.params == 3 * 3 * 4 * 2 + 8


def test_separable_conv2d():
    c = count(single(L.SeparableConv2D(16, 3, padding="same", name="sep"), (8, 8, 4)))
    r = row(c, "sep")
    depthwise = 8 * 8 * 3 * 3 * 4
    pointwise = 8 * 8 * 4 * 16
    assert r.macs == depthwise + pointwise == 6400
    assert r.params == 36 + 64 + 16


def test_conv2d_transpose_counts_input_positions():
    c = count(single(L.Conv2DTranspose(4, 3, strides=2, padding="same", use_bias=False), (5, 5, 2)))
    assert c.per_layer[0].output_shape == (None, 10, 10, 4)
    assert c.macs == 5 * 5 * 3 * 3 * 2 * 4


def test_dense_on_a_3d_input_multiplies_by_leading_positions():
    c = count(single(L.Dense(7, name="d"), (5, 6)))
    r = row(c, "d")
    assert r.output_shape == (None, 5, 7)
    assert r.macs == 5 * 6 * 7 == 210
    assert r.params == 49 and r.ops == 35


def test_einsum_dense_and_dot():
    c = count(single(L.EinsumDense("abc,cd->abd", output_shape=(5, 8), bias_axes="d"), (5, 6)))
    assert c.macs == 5 * 6 * 8 and c.params == 6 * 8 + 8
    a, b = keras.Input((3, 4)), keras.Input((3, 4))
    dot = keras.Model([a, b], L.Dot(axes=2)([a, b]))
    assert count(dot).macs == 3 * 3 * 4  # (3x4)·(3x4)^T per example


def test_recurrent_layers():
    c = count(single(L.LSTM(8), (5, 3)))
    assert c.macs == 5 * 4 * (3 * 8 + 8 * 8)
    bi = count(single(L.Bidirectional(L.GRU(4)), (6, 2)))
    assert bi.macs == 2 * 6 * 3 * (2 * 4 + 4 * 4)
    td = count(single(L.TimeDistributed(L.Dense(3)), (4, 5)))
    assert td.macs == 4 * 5 * 3


def test_multi_head_attention():
    query, value = keras.Input((5, 8)), keras.Input((7, 6))
    mha = L.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, name="mha")
    c = count(keras.Model([query, value], mha(query, value)))
    projections = 5 * 8 * 2 * 4 + 7 * 6 * 2 * 4 + 7 * 6 * 2 * 3 + 5 * 2 * 3 * 8
    scores, context = 2 * 5 * 7 * 4, 2 * 5 * 7 * 3
    assert c.macs == projections + scores + context == 1638
    assert c.ops == 2 * 5 * 7 + 5 * 2 * 4 + 2 * (5 * 4 + 7 * 4 + 7 * 3) + 5 * 8
    assert c.params == mha.count_params() and c.uncounted == ()


def test_elementwise_conventions():
    inputs = keras.Input((4, 4, 3))
    b = L.BatchNormalization(name="bn")(inputs)
    p = L.MaxPooling2D(2, name="pool")(b)
    g = L.GlobalAveragePooling2D(name="gap")(b)
    a = L.Add(name="add")([b, b, inputs])
    r = L.ReLU(name="relu")(a)
    ln = L.LayerNormalization(name="ln")(r)
    f = L.Flatten(name="flat")(ln)
    model = keras.Model(inputs, [p, g, f])
    c = count(model)
    assert c.macs == 0
    assert row(c, "bn").ops == 2 * 48
    assert row(c, "pool").ops == 12 * 4
    assert row(c, "gap").ops == 48
    assert row(c, "add").ops == 2 * 48
    assert row(c, "relu").ops == 48
    assert row(c, "ln").ops == 7 * 48
    assert row(c, "flat").ops == 0
    assert c.ops == 96 + 48 + 48 + 96 + 48 + 336
    assert c.params == model.count_params() == 4 * 3 + 2 * 3


# ------------------------------------------------------------------ effective counts


def test_masked_dense_effective_macs_by_hand():
    inputs = keras.Input((5, 4))  # 5 positions, 4 features
    wrapper = PruneWrapper(L.Dense(3, name="fc"))
    model = keras.Model(inputs, wrapper(inputs))
    mask = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]], "float32")  # 5 of 12 kept
    wrapper.layer.kernel.assign(np.arange(1, 13, dtype="float32").reshape(4, 3))
    wrapper.layer.bias.assign(np.array([1.0, 0.0, 2.0], "float32"))
    wrapper.set_mask("kernel", mask)
    c = count(model)
    r = row(c, "fc")
    assert r.class_name == "Dense"
    assert r.macs == 5 * 12 and r.effective_macs == 5 * 5
    assert c.effective_flops == 2 * 25
    assert r.params == 12 + 3  # the wrapper's masks and step are not parameters
    assert c.nonzero_params == 5 + 2  # 5 kept kernel entries, 2 nonzero biases


def test_masked_conv_effective_macs_are_exact():
    inputs = keras.Input((6, 6, 2))
    conv = L.Conv2D(3, 3, use_bias=False, name="conv")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.ones((3, 3, 2, 3), "float32")
    kernel[..., 1] = 0.0  # filter 1 pruned
    kernel[0, 0, 0, 0] = 0.0
    conv.kernel.assign(kernel)
    c = count(model)
    assert c.macs == 4 * 4 * 54
    assert c.effective_macs == 4 * 4 * (54 - 18 - 1)
    assert c.nonzero_params == 35


def test_wrapped_model_counts_like_the_plain_model():
    plain = models.get("lenet5", input_shape=(28, 28, 1))
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for layer in plain.layers[1:]:
        x = PruneWrapper(layer)(x) if isinstance(layer, (L.Conv2D, L.Dense)) else layer(x)
    wrapped = keras.Model(inputs, x)
    assert wrapped.count_params() > plain.count_params()  # masks are Keras weights ...
    a, b = count(plain), count(wrapped)
    assert a.params == b.params == plain.count_params()  # ... but not parameters
    assert (a.macs, a.ops) == (b.macs, b.ops)
    assert [r.name for r in a.per_layer] == [r.name for r in b.per_layer]


# ------------------------------------------------------------------ graphs


def test_params_equal_count_params_for_zoo_models():
    for name in ("resnet20", "mobilenetv2", "vgg16", "lenet300_100"):
        model = models.get(name)
        assert count(model).params == model.count_params(), name


def test_shared_layer_counts_once_per_call():
    inputs = keras.Input((4,))
    dense = L.Dense(4, name="shared")
    model = keras.Model(inputs, dense(dense(inputs)))
    c = count(model)
    assert [r.name for r in c.per_layer] == ["shared", "shared"]
    assert c.macs == 2 * 16 and c.params == 20 == model.count_params()
    assert [r.params for r in c.per_layer] == [20, 0]


def test_nested_application_in_sequential_is_flattened():
    inner = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), classes=10)
    outer = keras.Sequential([keras.Input((32, 32, 3)), L.Rescaling(1 / 255.0, name="scale"), inner, L.Dense(2, name="head")])
    c, ci = count(outer), count(inner)
    names = [r.name for r in c.per_layer]
    assert names[0] == "scale" and names[-1] == "head" and "conv1" in names
    assert c.macs == ci.macs + 10 * 2
    assert c.params == outer.count_params()


def test_unbuilt_sequential_and_unknown_dims_need_input_shape():
    seq = keras.Sequential([L.Dense(3), L.Dense(2)])
    with pytest.raises(GraphError, match="input_shape"):
        count(seq)
    assert count(seq, input_shape=(5,)).macs == 15 + 6
    inputs = keras.Input((None, None, 3))
    fcn = keras.Model(inputs, L.Conv2D(2, 1, use_bias=False)(inputs))
    with pytest.raises(GraphError, match="input_shape"):
        count(fcn)
    assert count(fcn, input_shape=(8, 8, 3)).macs == 64 * 3 * 2


def test_subclassed_model_is_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(GraphError, match="subclassed"):
        count(net)


def test_layers_without_a_formula_are_listed():
    inputs = keras.Input((6,), dtype="int32")
    model = keras.Model(inputs, L.Dense(2)(L.Embedding(50, 4)(inputs)))
    c = count(model)
    assert c.uncounted == ("Embedding",)
    assert c.params == 50 * 4 + 10 and c.macs == 6 * 4 * 2


def test_to_dict_is_json():
    c = count(models.get("lenet5", input_shape=(28, 28, 1)))
    d = json.loads(json.dumps(c.to_dict()))
    assert d["macs"] == c.macs and d["flops"] == 2 * c.macs
    assert d["per_layer"][0]["output_shape"] == [None, 28, 28, 6]
    assert isinstance(c, Counts)


def test_lenet5_by_hand():
    c = count(models.get("lenet5", input_shape=(28, 28, 1)))
    conv1 = 28 * 28 * 25 * 6
    conv2 = 10 * 10 * (25 * 6) * 16
    fc = 400 * 120 + 120 * 84 + 84 * 10
    assert c.macs == conv1 + conv2 + fc == 416_520
    assert [r.macs for r in c.per_layer] == [117_600, 0, 240_000, 0, 0, 48_000, 10_080, 840]
    # bias + ReLU on conv1 (2 x 4,704), 4 per max-pool output, bias + ReLU on conv2, ...
    assert [r.ops for r in c.per_layer] == [9408, 4704, 3200, 1600, 0, 240, 168, 10]
    assert c.ops == 19_330
    assert c.nni_flops == 416_520 + 4704 + 1600 + 120 + 84 + 10  # MACs + one per bias


# ------------------------------------------------------------------ published numbers


def test_cifar_resnet20_is_40_8_million_macs():
    c = count(models.get("resnet20"))
    assert c.macs == 40_813_184 and c.flops == 81_626_368
    assert (c.params, c.trainable_params) == (274_042, 272_474)
    assert abs(c.macs - 40.8e6) / 40.8e6 < 0.01
    # Option A (zero-padded identity shortcuts) would drop the two 1x1 projections:
    projections = sum(r.macs for r in c.per_layer if "shortcut_conv" in r.name)
    assert projections == 16 * 16 * 16 * 32 + 8 * 8 * 32 * 64
    assert c.macs - projections == 40_551_040  # also within 1 % of 40.8 M


def test_cifar_resnet56_macs():
    # 125.49 M with option A (the figure Torch-Pruning and others report) + 2 projections.
    assert count(models.get("resnet56")).macs == 125_485_696 + 262_144


def test_cifar_vgg16_params_and_macs_match_nni():
    model = models.get("vgg16")
    c = count(model)
    assert c.trainable_params == 14_987_722  # NNI's (PyTorch's) parameter count
    assert c.params == model.count_params() == 14_997_194  # + BN moving mean/variance
    assert c.macs == 313_463_808  # 13 convs 313,196,544 + Dense 262,144 + 5,120
    # NNI's count_flops_params(mode="full") adds bias adds and 2 per BN element:
    assert c.nni_flops == 314_018_314
    assert abs(c.macs - 314e6) / 314e6 < 0.01  # "≈ 314 M MACs", within 1 %


def test_nni_anchor_rows_are_reproduced():
    # /work/shared/anchors/nni_comparison_of_pruners.csv: vgg16 L1 sparsity 0.5 keeps half
    # of every conv's filters: params_after 3,820,010 and flops_after 79,155,722.
    half = count(models.get("vgg16", width=0.5, hidden_units=512))
    assert half.trainable_params == 3_820_010
    assert half.nni_flops == 79_155_722
    # resnet18 NetAdapt at sparsity 0.1 left the model dense: 11,173,962 / 556,651,530.
    r18 = count(models.get("resnet18"))
    assert r18.trainable_params == 11_173_962
    assert r18.nni_flops == 556_651_530
    assert r18.macs == 555_422_720


def test_keras_resnet50_at_224():
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    c = count(model)
    assert c.params == model.count_params() == 25_636_712
    # Keras' ResNet50 is v1: the stride-2 sits on the first 1x1 conv of stages 3-5.
    assert c.macs == 3_857_973_248  # 3.86 G: He et al. (2016) list "3.8 x 10^9"
    assert c.macs + c.ops == 3_906_244_560  # + BN, ReLU, add, pooling, bias: 3.91 G
    # The "4.1 G" figure is torchvision's v1.5 layout (stride on the 3x3 conv).
    # Moving the strides reproduces it: each 1x1 conv1 of those blocks runs at 4x positions.
    def v15(layer):
        config = layer.get_config()
        for stage in (3, 4, 5):
            if layer.name == f"conv{stage}_block1_1_conv":
                config["strides"] = (1, 1)
            if layer.name == f"conv{stage}_block1_2_conv":
                config["strides"] = (2, 2)
        return layer.__class__.from_config(config)

    v15_model = keras.models.clone_model(model, clone_function=v15)
    c15 = count(v15_model)
    assert c15.macs == 3_857_973_248 + 3 * (3 * 25_690_112)
    assert abs(c15.macs - 4.1e9) / 4.1e9 < 0.01


def test_level_pruned_model_dense_vs_effective():
    import kprune

    model = models.get("lenet300_100", input_shape=(28, 28, 1))
    recipe = {"prune": {"criterion": "level", "config_list": [{"op_types": ["Dense"], "sparsity": 0.9}]}}
    wrapped = kprune.wrap(model, recipe)
    kprune.Pruner(wrapped).prune_now()
    dense, pruned, stripped = count(model), count(wrapped), count(kprune.strip(wrapped))
    assert pruned.params == dense.params == stripped.params == 266_610
    assert pruned.macs == dense.macs == 266_200  # 784*300 + 300*100 + 100*10
    # 90 % of every kernel is zero, so about 10 % of the MACs remain (rounding per layer).
    assert abs(pruned.effective_macs / pruned.macs - 0.10) < 0.002
    for r in pruned.per_layer:
        if r.macs:
            kernel = wrapped.get_layer(r.name).layer.kernel
            assert r.effective_macs == int(np.count_nonzero(kernel.numpy()))  # 1 position
    assert (stripped.effective_macs, stripped.nonzero_params) == (pruned.effective_macs, pruned.nonzero_params)
