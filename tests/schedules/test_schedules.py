import numpy as np
import pytest

from kprune import schedules
from kprune.errors import RecipeError


def test_agp_matches_zhu_gupta_formula():
    s = schedules.get({"name": "agp", "start_step": 10, "end_step": 110, "frequency": 10,
                       "initial_sparsity": 0.1}).bind(None)
    final = 0.9
    for t in range(10, 111, 10):
        expected = final + (0.1 - final) * (1 - (t - 10) / 100) ** 3
        assert s.updates_at(t)
        assert s.sparsity(t, final) == pytest.approx(expected)
    assert not s.updates_at(9) and not s.updates_at(15) and not s.updates_at(120)
    assert s.sparsity(110, final) == pytest.approx(final)


def test_agp_in_epochs_binds_steps():
    s = schedules.get({"name": "agp", "start_epoch": 1, "end_epoch": 3, "frequency": 1}).bind(50)
    updates = [t for t in range(400) if s.updates_at(t)]
    assert updates == [50, 100, 150]
    assert s.sparsity(100, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    with pytest.raises(RecipeError, match="steps per epoch"):
        schedules.get({"name": "agp", "start_epoch": 0, "end_epoch": 3}).bind(None)


def test_oneshot_and_constant():
    o = schedules.get("oneshot").bind(None)
    assert [t for t in range(10) if o.updates_at(t)] == [0]
    assert o.sparsity(5, 0.7) == 0.7
    c = schedules.get({"name": "constant", "start_step": 2, "end_step": 8, "frequency": 3}).bind(None)
    assert [t for t in range(20) if c.updates_at(t)] == [2, 5, 8]
    assert np.isclose(c.sparsity(5, 0.4), 0.4)


def test_get_config_round_trip():
    s = schedules.get({"name": "agp", "start_step": 0, "end_step": 10})
    again = schedules.get(s.get_config())
    assert again.get_config() == s.get_config()
