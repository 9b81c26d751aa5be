"""Every serializable object of every registry round-trips through ``get_config``/``from_config``."""

from __future__ import annotations

import pytest

from kprune import criteria, schedules, search
from kprune.config.registry import CRITERIA, SCHEDULES, SEARCHES

SCHEDULE_CONFIGS = {
    "oneshot": {"name": "oneshot"},
    "constant": {"name": "constant"},
    "agp": {"name": "agp", "start_step": 0, "end_step": 100, "frequency": 10},
    "iterative": {"name": "iterative", "rounds": 3},
}


@pytest.mark.parametrize("name", CRITERIA.names())
def test_criterion_round_trip(name):
    crit = criteria.get(name)
    config = crit.get_config()
    assert config == {"name": name}
    again = criteria.get(config)
    assert type(again) is type(crit) and again.get_config() == config


def test_criterion_config_with_unknown_settings_is_refused():
    from kprune.errors import RecipeError
    with pytest.raises(RecipeError, match="takes no settings"):
        criteria.get({"name": "l1", "p": 3})


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_round_trip(name):
    sched = schedules.get(SCHEDULE_CONFIGS[name])
    config = sched.get_config()
    assert config["name"] == name
    again = schedules.get(config)
    assert type(again) is type(sched) and again.get_config() == config


@pytest.mark.parametrize("name", SEARCHES.names())
def test_search_round_trip(name):
    algo = search.get({"name": name, "constraint": "params", "budget": 0.5})
    config = algo.get_config()
    assert config["name"] == name and config["budget"] == 0.5
    again = search.get(config)
    assert type(again) is type(algo) and again.get_config() == config


def test_every_schedule_has_a_round_trip_config():
    assert set(SCHEDULE_CONFIGS) == set(SCHEDULES.names())
