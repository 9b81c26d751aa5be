import numpy as np

from kprune.pruning import allocation as A


def test_weight_mask_prunes_lowest_with_stable_ties():
    keep = A.weight_mask(np.array([5.0, 1.0, 1.0, 3.0, 0.0]), 0.6)
    np.testing.assert_array_equal(keep, [True, False, False, True, False])


def test_frozen_entries_stay_pruned():
    keep = A.weight_mask(np.array([5.0, 1.0, 2.0, 3.0]), 0.25, frozen=np.array([True, False, False, False]))
    np.testing.assert_array_equal(keep, [False, True, True, True])


def test_kept_channels_rounding_and_min_keep():
    assert A.kept_channels(64, 0.5) == 32
    assert A.kept_channels(20, 0.5, round_to=8) == 16
    assert A.kept_channels(20, 0.7, round_to=8) == 8
    assert A.kept_channels(10, 0.99, min_keep=2) == 2
    assert A.kept_channels(4, 0.9, round_to=8) == 4


def test_auto_rounding_is_make_divisible_by_8_from_16_channels():
    # nearest multiple of 8, at least 8, never more than 10 % below the target's keep
    assert [A.kept_channels(64, s, "auto") for s in (0.1, 0.3, 0.5, 0.7, 0.9)] == [56, 48, 32, 24, 8]
    assert A.kept_channels(120, 0.5, "auto") == 64 and A.kept_channels(84, 0.5, "auto") == 40
    assert A.kept_channels(16, 0.3, "auto") == 16      # 8 would be 27 % below the 11 asked for
    assert A.kept_channels(12, 0.5, "auto") == 6       # under 16 channels: exact
    assert A.kept_channels(64, 0.99, "auto") == 8 and A.kept_channels(64, 0.7, "auto") == 24  # 16 < 0.9 x 19
    assert A.kept_channels(4, 0.75, "auto", width=4) == 2   # heads of 4 channels: pairs
    assert A.kept_channels(4, 0.75, "auto", width=8) == 1   # heads of 8: free


def test_global_keep_auto_rounding_moves_both_ways():
    scores = [np.arange(64, dtype=float), np.arange(64, dtype=float) + 0.5]
    keeps = A.global_keep(scores, 0.34, round_to="auto")  # ≈ 43 kept per unit: rounded down to 40
    assert [int(k.sum()) for k in keeps] == [40, 40]
    assert all(k[-40:].all() for k in keeps)                # the best-scored ones


def test_channel_keep():
    np.testing.assert_array_equal(A.channel_keep(np.array([0.1, 5.0, 2.0, 3.0]), 0.5), [False, True, False, True])


def test_global_keep_uses_costs_and_caps():
    # unit 0 has cheap low scores, unit 1 expensive; prune half the total cost
    scores = [np.array([1.0, 2.0]), np.array([0.5, 10.0])]
    costs = [np.array([1.0, 1.0]), np.array([2.0, 2.0])]
    keeps = A.global_keep(scores, 0.5, costs=costs)  # total 6, budget 3: prune 0.5 (cost 2) then 1.0 (cost 1)
    np.testing.assert_array_equal(keeps[0], [False, True])
    np.testing.assert_array_equal(keeps[1], [False, True])
    keeps = A.global_keep([np.array([0.0, 0.1, 0.2, 9.0]), np.array([5.0, 6.0])], 0.5, max_per_unit=0.5)
    assert keeps[0].sum() == 2 and keeps[1].sum() == 1


def test_aggregate():
    v = [np.array([1.0, 4.0]), np.array([3.0, 0.0])]
    np.testing.assert_array_equal(A.aggregate(v, "sum"), [4, 4])
    np.testing.assert_array_equal(A.aggregate(v, "mean"), [2, 2])
    np.testing.assert_array_equal(A.aggregate(v, "max"), [3, 4])


def test_weight_mask_equals_stable_argsort_reference_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        s = rng.integers(0, 5, size=(7, 9)).astype(float)  # many ties
        frozen = rng.random((7, 9)) < 0.2
        sp = rng.random()
        ref = np.ones(s.size, bool)
        order = np.argsort(np.where(frozen.ravel(), -np.inf, s.ravel()), kind="stable")
        ref[order[:A.n_pruned(s.size, sp)]] = False
        np.testing.assert_array_equal(A.weight_mask(s, sp, frozen), ref.reshape(s.shape))

