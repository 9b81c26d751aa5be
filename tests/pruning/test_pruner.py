"""The Pruner and its parts: jobs, updaters, the fast-path seam and the criterion hook."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kprune
from kprune.criteria.base import Criterion
from kprune.pruning.updaters import FilterUpdater, LayerUpdater


def _cnn():
    x = keras.Input((6, 6, 2))
    y = keras.layers.Conv2D(4, 3, name="c1")(x)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(3, 3, name="c2")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    out = keras.layers.Dense(2, name="fc")(y)
    return keras.Model(x, out)


def _recipe(**prune):
    base = {"criterion": "l1", "granularity": "filter",
            "config_list": [{"op_names": ["c1"], "sparsity": 0.5}]}
    base.update(prune)
    return {"prune": base}


def test_l1_filter_masks_match_a_numpy_ranking():
    model = _cnn()
    kernel = model.get_layer("c1").kernel.numpy()
    wrapped = kprune.wrap(model, _recipe())
    kprune.Pruner(wrapped).prune_now()
    l1 = np.abs(kernel).sum(axis=(0, 1, 2))
    expect_kept = np.sort(np.argsort(-l1, kind="stable")[:2])
    mask = wrapped.get_layer("c1").masks["kernel"].numpy()
    kept = np.flatnonzero(mask.reshape(-1, 4).any(axis=0))
    np.testing.assert_array_equal(kept, expect_kept)
    # the group mask reaches the BatchNorm and the next conv's input channels
    gamma = wrapped.get_layer("bn1").masks["gamma"].numpy()
    np.testing.assert_array_equal(np.flatnonzero(gamma), expect_kept)
    c2 = wrapped.get_layer("c2").masks["kernel"].numpy()
    np.testing.assert_array_equal(np.flatnonzero(c2.any(axis=(0, 1, 3))), expect_kept)


def test_jobs_group_wrappers_by_entry_and_pick_the_updater():
    recipe = {"prune": {"criterion": "level", "config_list": [
        {"op_names": ["c1"], "sparsity": 0.5, "granularity": "filter", "criterion": "l1"},
        {"op_names": ["fc"], "sparsity": 0.5}]}}
    pruner = kprune.Pruner(kprune.wrap(_cnn(), recipe))
    jobs = pruner.jobs()
    assert [(j.entry, j.kind, j.criterion.name, [w.name for w in j.members]) for j in jobs] == [
        (0, "filter", "l1", ["c1"]), (1, "weight", "level", ["fc"])]
    assert [type(pruner._updater(j)) for j in jobs] == [FilterUpdater, LayerUpdater]
    # group_score: auto (default) with l1 scores c1's whole group: its filters, bn1's scale, c2's input channels
    assert pruner._updater(jobs[0]).scored_layers(jobs[0]) == [("c1", "kernel"), ("bn1", "gamma"), ("c2", "kernel")]
    assert pruner._updater(jobs[1]).scored_layers(jobs[1]) == [("fc", "kernel")]
    recipe["prune"]["group_score"] = "producers"
    pruner = kprune.Pruner(kprune.wrap(_cnn(), recipe))
    assert pruner._updater(pruner.jobs()[0]).scored_layers(pruner.jobs()[0]) == [("c1", "kernel")]


class _CountingFastPath:
    def __init__(self, answer):
        self.calls, self.answer = [], answer

    def __call__(self, targets, step):
        self.calls.append((dict(targets), step))
        return self.answer


@pytest.mark.parametrize("answer", [True, False])
def test_fast_path_seam_is_tried_first_for_step_updates(answer):
    recipe = _recipe(schedule={"name": "agp", "start_step": 0, "end_step": 4, "frequency": 1})
    wrapped = kprune.wrap(_cnn(), recipe)
    pruner = kprune.Pruner(wrapped)
    fast = _CountingFastPath(answer)
    pruner.use_fast_path(fast)
    pruner.on_step()  # step 0 is an update step
    assert len(fast.calls) == 1 and fast.calls[0][1] == 1
    assert set(fast.calls[0][0]) == {"c1"}
    mask = wrapped.get_layer("c1").masks["kernel"].numpy()
    # True: the fast path did the update (nothing from the host path); False: the host path ran
    # (the AGP target at step 0 is 0, so no channel is pruned either way, but the step is synced)
    assert np.all(mask == 1)
    assert int(wrapped.get_layer("c1").pruning_step.numpy()) == (0 if answer else 1)


def test_fast_path_is_chosen_only_where_it_applies():
    level = {"prune": {"criterion": "level", "schedule": {"name": "agp", "start_step": 0, "end_step": 2},
                       "config_list": [{"op_names": ["fc"], "sparsity": 0.5}]}}
    p = kprune.Pruner(kprune.wrap(_cnn(), level))
    p.on_step()
    assert p.fast_path is not None
    p = kprune.Pruner(kprune.wrap(_cnn(), _recipe(schedule={"name": "agp", "start_step": 0, "end_step": 2})))
    p.on_step()
    assert p.fast_path is None  # filter pruning has no compiled update
    p = kprune.Pruner(kprune.wrap(_cnn(), level))
    p.fast = False
    p.on_step()
    assert p.fast_path is None


def test_criterion_install_hook_runs_for_filter_jobs():
    seen = []

    class Hooked(Criterion):
        name = "hooked-test"
        granularities = ("filter",)

        def install(self, groups, plan):
            seen.append(sorted(n for g in groups for n in g.layer_names("producer")))
            return 0

        def __call__(self, kernel, axis=None, **stats):
            return np.abs(kernel).sum(axis=tuple(i for i in range(kernel.ndim) if i != axis))

    model = kprune.wrap(_cnn(), _recipe())
    model.get_layer("c1").spec["criterion"] = Hooked()
    kprune.Pruner(model)
    assert seen == [["c1"]]


def test_slim_installs_its_penalty_through_the_hook():
    model = kprune.wrap(_cnn(), _recipe(criterion="slim", scope="global", slim_lambda=0.25,
                                        config_list=[{"op_names": ["c1"], "total_sparsity": 0.5}]))
    pruner = kprune.Pruner(model)
    assert pruner.penalties_changed == 1
    gamma = model.get_layer("bn1").layer.gamma
    assert gamma.regularizer is not None and gamma.regularizer.lam == 0.25


def test_unprunable_selection_is_reported_in_skipped():
    # the classifier's units reach the model output: its channel group is not prunable
    recipe = {"prune": {"criterion": "l1", "granularity": "filter",
                        "config_list": [{"op_names": ["fc", "c1"], "sparsity": 0.5}]}}
    pruner = kprune.Pruner(kprune.wrap(_cnn(), recipe))
    pruner.prune_now()
    assert "fc" in pruner.skipped and "model output" in pruner.skipped["fc"]
    assert "c1" not in pruner.skipped


def test_a_group_the_rounding_keeps_whole_is_warned_about():
    import warnings

    import keras
    import pytest

    import kprune

    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(16, 3, name="c1")(x)
    h = keras.layers.Conv2D(16, 3, name="c2")(h)
    model = keras.Model(x, keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D()(h)))
    with pytest.warns(UserWarning, match=r"round_to: auto kept every channel of `c1` \(16 channels, the target keeps 15\)"):
        pruner = kprune.Pruner(kprune.wrap(model, sparsity=0.05, op_types="Conv2D"))
        pruner.prune_now()
    assert set(pruner.rounded_whole) == {"c1", "c2"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pruner = kprune.Pruner(kprune.wrap(model, sparsity=0.05, op_types="Conv2D", round_to=1))
        pruner.prune_now()
    assert pruner.rounded_whole == {} and kprune.sparsity(pruner.model)["total"] > 0
