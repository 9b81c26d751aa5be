"""Hostile recipes: every failure is a KPruneError naming the key path and what is allowed."""

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings

import kprune
from kprune.errors import KPruneError, RecipeError
from kprune.config.recipe import Recipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe_strategies as R  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(R.BAD_RECIPES)
def test_every_bad_recipe_fails_with_a_clear_kprune_error(case):
    err = R.attempt(case)
    ok, why = R.clear_error(case, err)
    assert ok, f"{case[0]}: {why}\ncase: {case[1]!r}"


@pytest.mark.parametrize("case", [("contradictory settings", R.BASE, "")])
def test_the_base_recipe_is_valid(case):
    assert R.attempt(case) is None


def test_nan_sparsity_is_refused():
    with pytest.raises(RecipeError, match=r"prune\.config_list\[0\]\.sparsity.*finite number.*\[0\.0, 1\.0\)"):
        Recipe.from_dict({"prune": {"config_list": [{"op_types": ["Dense"], "sparsity": float("nan")}]}})


def test_self_referencing_yaml_alias_is_refused():
    with pytest.raises(RecipeError, match=r"`prune\[0\]`: refers to itself"):
        Recipe.from_yaml("prune: &a [*a]\n")


def test_python_tags_are_not_executed():
    with pytest.raises(RecipeError, match="malformed YAML"):
        Recipe.from_yaml("prune: !!python/object/apply:os.system ['echo pwned']\n")


def test_everything_excluded_names_config_list():
    recipe = {"prune": {"config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.5},
                                        {"op_names_re": [".*"], "exclude": True}]}}
    with pytest.raises(KPruneError, match=r"prune\.config_list selects no layer.*prunable types"):
        kprune.wrap(R.tiny_model(), recipe)


def test_nm_on_too_few_input_channels_names_the_entry():
    model = kprune.wrap(R.tiny_model(), {"prune": {"granularity": "2:4", "config_list": [
        {"op_names": ["c1"], "sparsity": 0.5}]}})
    with pytest.raises(KPruneError, match=r"prune\.config_list\[0\]\.granularity `2:4` on layer `c1`"):
        kprune.Pruner(model).prune_now()
