"""``prune.group_score`` (which weights score a channel group) and order-independent scoring.

* ``producers``: the producers' filters, as NNI;
* ``all``: every weight the channel's removal deletes — producers' filters, BatchNorm scales,
  consumers' input channels — as Torch-Pruning's group importance; checked here by hand and
  against Torch-Pruning itself (same kept channels on a ResNet-20);
* ``auto`` (default): ``all`` for weight and gradient criteria, ``producers`` for the criteria
  that read what only producers have (activations, the BatchNorm after a layer);
* one mask update scores every ``config_list`` entry against the same weights, so splitting a
  selection into one entry per layer keeps the same channels.
"""

from __future__ import annotations

import copy
import os
import sys

import keras
import numpy as np
import pytest

import kprune
from kprune.errors import RecipeError


def _chain():
    """c1 -> bn1 -> relu -> c2 -> bn2 -> relu -> pool -> fc: c1's group has producer c1,
    follower bn1 and consumer c2; c2's group has consumer fc."""
    x = keras.Input((6, 6, 2))
    y = keras.layers.Conv2D(4, 3, use_bias=False, name="c1")(x)
    y = keras.layers.BatchNormalization(name="bn1", gamma_initializer=keras.initializers.RandomUniform(0.2, 2.0))(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(6, 3, use_bias=False, name="c2")(y)
    y = keras.layers.BatchNormalization(name="bn2", gamma_initializer=keras.initializers.RandomUniform(0.2, 2.0))(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(3, name="fc")(y))


def _kept(wrapped, name):
    mask = wrapped.get_layer(name).masks["kernel"].numpy()
    return np.flatnonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0)).tolist()


def _top(score, keep):
    return sorted(np.argsort(-score, kind="stable")[:keep].tolist())


def _fresh(seed=3):
    keras.utils.set_random_seed(seed)
    return _chain()


def _filter_recipe(criterion, group_score, config_list=None):
    return {"prune": {"criterion": criterion, "granularity": "filter", "round_to": 1, "group_score": group_score,
                      "config_list": config_list or [{"op_names": ["c1"], "sparsity": 0.5}]}}


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_all_scores_the_norm_of_every_weight_a_channel_removal_deletes(criterion):
    def build():  # c1's filters grow with the index, c2 reads channels 0 and 1 strongly
        model = _fresh()
        c1, c2 = model.get_layer("c1").kernel, model.get_layer("c2").kernel
        c1.assign(c1.numpy() * np.array([1.0, 2.0, 3.0, 4.0], "float32"))
        c2.assign(c2.numpy() * np.array([8.0, 6.0, 0.1, 0.1], "float32")[:, None])
        return model

    model = build()
    c1, c2 = model.get_layer("c1").kernel.numpy(), model.get_layer("c2").kernel.numpy()
    gamma = model.get_layer("bn1").gamma.numpy()
    p = 1 if criterion == "l1" else 2
    # per c1 channel: its filter (axis 3 of c1), its BN scale, c2's input-channel slice (axis 2)
    group = np.sum(np.abs(c1) ** p, axis=(0, 1, 2)) + np.abs(gamma) ** p + np.sum(np.abs(c2) ** p, axis=(0, 1, 3))
    producers = np.sum(np.abs(c1) ** p, axis=(0, 1, 2))
    assert _top(group, 2) != _top(producers, 2), "this seed has no case where the two definitions differ"
    for group_score, expected in (("all", _top(group, 2)), ("producers", _top(producers, 2))):
        wrapped = kprune.wrap(build(), _filter_recipe(criterion, group_score))
        kprune.Pruner(wrapped).prune_now()
        assert _kept(wrapped, "c1") == expected, group_score


def test_all_refuses_criteria_that_score_what_only_producers_have():
    for crit, what in (("apoz", "output activations"), ("slim", "scale of the BatchNorm")):
        with pytest.raises(RecipeError, match="prune.group_score") as e:
            kprune.Recipe.from_dict(_filter_recipe(crit, "all"))
        assert what in str(e.value) and crit in str(e.value)
    with pytest.raises(RecipeError, match="group_score"):
        kprune.Recipe.from_dict(_filter_recipe("l1", "everything"))


def test_auto_is_the_default_and_scores_the_whole_group_where_the_criterion_can():
    def scored(criterion, group_score=None):
        recipe = _filter_recipe(criterion, group_score)
        if group_score is None:
            del recipe["prune"]["group_score"]
        pruner = kprune.Pruner(kprune.wrap(_fresh(), recipe))
        return {k for j in pruner.jobs() for k in pruner._updater(j).scored_layers(j)}

    assert kprune.Recipe.from_dict({}).prune["group_score"] == "auto"
    for criterion in ("l1", "fpgm", "random"):  # weights (or nothing): the whole group
        assert scored(criterion) == scored(criterion, "all") != scored(criterion, "producers"), criterion
    assert scored("l2") == {("c1", "kernel"), ("bn1", "gamma"), ("c2", "kernel")}
    for criterion in ("apoz", "slim"):  # what only producers have: producers, and no refusal
        assert scored(criterion) == scored(criterion, "producers") == {("c1", "kernel")}, criterion


def test_taylor_with_all_collects_gradients_of_consumers_and_scales():
    model = _fresh()
    x = np.random.default_rng(0).normal(size=(32, 6, 6, 2)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=32)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped = kprune.wrap(model, _filter_recipe("taylor_fo", "all"))
    pruner = kprune.Pruner(wrapped, data=[(x[:16], y[:16]), (x[16:], y[16:])])
    scored = {k for j in pruner.jobs() for k in pruner._updater(j).scored_layers(j)}
    assert scored == {("c1", "kernel"), ("bn1", "gamma"), ("c2", "kernel")}
    pruner.prune_now()
    assert len(_kept(wrapped, "c1")) == 2


@pytest.mark.parametrize("group_score", ["producers", "all"])
def test_entries_split_per_layer_keep_the_same_channels_as_one_entry(group_score):
    """One mask update scores all entries against the weights from before it: c1's group
    zeroes c2's input channels, which must not change c2's own filter scores."""
    def build():  # c1 drops channels 0, 1; c2's filters 0-2 draw their weight from them
        model = _fresh(5)
        c1, c2 = model.get_layer("c1").kernel, model.get_layer("c2").kernel
        c1.assign(c1.numpy() * np.array([0.1, 0.1, 1.0, 1.0], "float32"))
        w = c2.numpy() * 0.1
        w[:, :, :2, :3] = 1.0
        c2.assign(w)
        return model

    def prune(config_list):
        wrapped = kprune.wrap(build(), {"prune": {"criterion": "l1", "granularity": "filter", "round_to": 1,
                                                  "group_score": group_score, "config_list": config_list}})
        kprune.Pruner(wrapped).prune_now()
        return _kept(wrapped, "c1"), _kept(wrapped, "c2")

    one = prune([{"op_names": ["c1", "c2"], "sparsity": 0.5}])
    # producers: c1 by its own filters; all: c1's channels 0, 1 are what c2 reads most
    assert one == ([2, 3] if group_score == "producers" else [0, 1], [0, 1, 2])
    for order in (["c1", "c2"], ["c2", "c1"]):
        assert prune([{"op_names": [n], "sparsity": 0.5} for n in order]) == one, order


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_all_keeps_the_channels_torch_pruning_keeps_on_a_resnet20(criterion):
    torch = pytest.importorskip("torch")
    tp = pytest.importorskip("torch_pruning")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    from _torch_resnet import CifarResNet, conv_channels
    from tp_transfer import torch_to_keras

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = CifarResNet(in_channels=1, width=0.5)
    for m in net.modules():  # scales that matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 2.0)
    model = torch_to_keras(net, kprune.models.get("resnet20", input_shape=(28, 28, 1), num_classes=10, width=0.5))
    pruned = copy.deepcopy(net)
    importance = tp.importance.MagnitudeImportance(p=1 if criterion == "l1" else 2)
    pruner = tp.pruner.BasePruner(pruned, torch.zeros(1, 1, 28, 28), importance=importance, pruning_ratio=0.25,
                                  global_pruning=False, ignored_layers=[pruned.predictions])
    names = {m: n.replace(".", "_") for n, m in pruned.named_modules()}
    tp_kept = {}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            module = dep.target.module
            if isinstance(module, torch.nn.Conv2d) and dep.handler.__name__ == "prune_out_channels":
                tp_kept[names[module]] = sorted(set(range(module.out_channels)) - {int(i) for i in idxs})
        group.prune()
    channels = conv_channels(pruned)
    full = {n: model.get_layer(n).filters for n in channels}
    # one entry per layer, as a user matching TP's per-layer counts would write it
    wrapped = kprune.wrap(model, _filter_recipe(criterion, "all", [
        {"op_names": [n], "sparsity": 1.0 - channels[n] / full[n]} for n in sorted(channels)]))
    kprune.Pruner(wrapped).prune_now()
    differ = {n: (_kept(wrapped, n), tp_kept[n]) for n in sorted(tp_kept) if _kept(wrapped, n) != tp_kept[n]}
    assert len(tp_kept) == 21 and not differ


@pytest.mark.parametrize("criterion", ["l2", "taylor_fo"])
def test_all_on_attention_heads_then_compact(criterion):
    keras.utils.set_random_seed(0)
    x = keras.Input((5, 8))
    y = keras.layers.MultiHeadAttention(4, 2, name="att")(x, x)
    y = keras.layers.Dense(8, name="mlp")(keras.layers.Add()([x, y]))
    model = keras.Model(x, keras.layers.Dense(3, name="fc")(keras.layers.GlobalAveragePooling1D()(y)))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xs = np.random.default_rng(0).normal(size=(8, 5, 8)).astype("float32")
    data = [(xs, np.arange(8) % 3)]
    wrapped = kprune.wrap(model, {"prune": {"criterion": criterion, "group_score": "all", "round_to": 1,
                                            "config_list": [{"op_names": ["att"], "granularity": "head",
                                                             "sparsity": 0.5}]}})
    pruner = kprune.Pruner(wrapped, data=data)
    scored = {k for j in pruner.jobs() for k in pruner._updater(j).scored_layers(j)}
    assert ("att", "_output_dense.kernel") in scored and ("att", "_query_dense.kernel") in scored
    pruner.prune_now()
    small = kprune.compact(wrapped)
    assert small.get_layer("att")._num_heads == 2
    np.testing.assert_allclose(small(xs), wrapped(xs), rtol=1e-5, atol=1e-5)
