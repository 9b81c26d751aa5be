import keras
import numpy as np
import pytest

import kprune
from kprune.pruning import granularity as G


def test_parse_and_check():
    assert G.parse("2:4") == ("n:m", (2, 4))
    assert G.parse("filter") == ("filter", None)
    assert G.check("1:8") is None and G.check("block") is None
    assert "N:M" in G.check("4:2") and "N:M" in G.check("rows")
    with pytest.raises(kprune.RecipeError, match="granularity"):
        kprune.Recipe.from_dict({"prune": {"granularity": "5:4"}})


def test_nm_keep_exactly_n_per_block_along_input_axis():
    scores = np.random.default_rng(0).random((3, 3, 8, 5))   # conv kernel (kh, kw, in, out)
    keep = G.nm_keep(scores, 2, 4, axis=2)
    blocks = np.moveaxis(keep, 2, -1).reshape(-1, 4)
    assert np.all(blocks.sum(1) == 2)
    s = np.moveaxis(scores, 2, -1).reshape(-1, 4)
    kept_min = np.where(blocks, s, np.inf).min(1)
    pruned_max = np.where(~blocks, s, -np.inf).max(1)
    assert np.all(kept_min > pruned_max)
    # a gradual target prunes round(t * M) per block, never more than M - N
    assert np.all(np.moveaxis(G.nm_keep(scores, 2, 4, 2, sparsity=0.25), 2, -1).reshape(-1, 4).sum(1) == 3)


def conv_dense():
    inp = keras.Input((5, 5, 8))
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.Dense(4, name="fc")(x))


def test_two_four_from_a_recipe():
    w = kprune.wrap(conv_dense(), {"prune": {"criterion": "level", "granularity": "2:4",
                                             "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.5}]}})
    before = np.abs(w.get_layer("conv").layer.kernel.numpy())
    kprune.Pruner(w).prune_now()
    k = w.get_layer("conv").layer.kernel.numpy()
    nz = np.moveaxis(k != 0, 2, -1).reshape(-1, 4).sum(1)
    assert np.all(nz == 2)
    kept = np.moveaxis(np.where(k != 0, before, np.inf), 2, -1).reshape(-1, 4).min(1)
    gone = np.moveaxis(np.where(k == 0, before, -np.inf), 2, -1).reshape(-1, 4).max(1)
    assert np.all(kept >= gone)
    fc = w.get_layer("fc").layer.kernel.numpy()             # (in=72, out=4): blocks along axis 0
    assert np.all((fc != 0).T.reshape(-1, 4).sum(1) == 2)


def test_two_four_errors():
    base = {"criterion": "level", "granularity": "2:4"}
    w = kprune.wrap(conv_dense(), {"prune": {**base, "config_list": [{"op_names": ["conv"], "sparsity": 0.6}]}})
    with pytest.raises(kprune.RecipeError, match="sparsity: 0.5"):
        kprune.Pruner(w).prune_now()
    w = kprune.wrap(conv_dense(), {"prune": {**base, "granularity": "3:7",
                                             "config_list": [{"op_names": ["conv"], "sparsity": 4 / 7}]}})
    with pytest.raises(kprune.UnsupportedLayerError, match="multiple of 7"):
        kprune.Pruner(w).prune_now()
    w = kprune.wrap(conv_dense(), {"prune": {**base, "scope": "global",
                                             "config_list": [{"op_names": ["conv"], "total_sparsity": 0.5}]}})
    with pytest.raises(kprune.RecipeError, match="layerwise"):
        kprune.Pruner(w).prune_now()


def test_blocks_pure_functions():
    s = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(G.block_scores(s, (2, 2)), [[2.5, 4.5], [8.5, 10.5]])
    np.testing.assert_array_equal(G.block_sizes((3, 4), (2, 2)), [[4, 4], [2, 2]])
    keep = G.expand_blocks(np.array([[True, False], [False, True]]), (3, 4), (2, 2))
    np.testing.assert_array_equal(keep.astype(int), [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]])


def test_block_granularity_zeroes_whole_tiles():
    inp = keras.Input((16,))
    m = keras.Model(inp, keras.layers.Dense(8, name="d")(inp))
    w = kprune.wrap(m, {"prune": {"criterion": "l1", "granularity": "block", "block_shape": [4, 1],
                                  "config_list": [{"op_names": ["d"], "sparsity": 0.5}]}})
    before = np.abs(w.get_layer("d").layer.kernel.numpy())
    kprune.Pruner(w).prune_now()
    k = w.get_layer("d").layer.kernel.numpy()
    tiles = (k != 0).reshape(4, 4, 8)            # [row block, 4 rows, col]
    assert np.all(tiles.all(1) | ~tiles.any(1))  # each 4x1 tile all kept or all pruned
    assert np.mean(k == 0) == 0.5
    means = before.reshape(4, 4, 8).mean(1)
    kept = tiles.all(1)
    assert means[kept].min() >= means[~kept].max()


def test_channel_granularity_masks_input_channels():
    w = kprune.wrap(conv_dense(), {"prune": {"criterion": "l2", "granularity": "channel",
                                             "config_list": [{"op_names": ["conv"], "sparsity": 0.25}]}})
    k0 = w.get_layer("conv").layer.kernel.numpy()
    norms = np.sqrt((k0 ** 2).sum(axis=(0, 1, 3)))
    kprune.Pruner(w).prune_now()
    mask = w.get_layer("conv").masks["kernel"].numpy()
    pruned = np.where(~mask.any(axis=(0, 1, 3)))[0]
    np.testing.assert_array_equal(np.sort(pruned), np.sort(np.argsort(norms)[:2]))
    assert np.all(mask[:, :, np.setdiff1d(np.arange(8), pruned), :] == 1)
    assert not isinstance(w.get_layer("fc"), kprune.PruneWrapper) or not w.get_layer("fc").spec


def test_global_block_and_channel_rank_across_layers():
    inp = keras.Input((8,))
    h = keras.layers.Dense(8, name="a")(inp)
    out = keras.layers.Dense(8, name="b")(h)
    m = keras.Model(inp, out)
    m.get_layer("b").set_weights([m.get_layer("b").kernel.numpy() * 100, np.zeros(8, "float32")])
    for gran in ("block", "channel"):
        w = kprune.wrap(m, {"prune": {"criterion": "l1", "granularity": gran, "scope": "global",
                                      "block_shape": [2, 2],
                                      "config_list": [{"op_names": ["a", "b"], "total_sparsity": 0.5}]}})
        kprune.Pruner(w).prune_now()
        sp = kprune.sparsity(w)
        assert sp["total"] == pytest.approx(0.5)
        # the small layer goes first, down to max_sparsity_per_layer (0.99: one unit kept)
        if gran == "channel":   # 8 channels of 8 weights per layer: 7 of a, then 1 of b
            assert (sp["a"], sp["b"]) == (7 / 8, 1 / 8)
        else:                   # 16 tiles of 4 weights per layer: 15 of a, then 1 of b
            assert (sp["a"], sp["b"]) == (15 / 16, 1 / 16)
