"""Hypothesis strategies that generate bad recipes, and the check that a failure is clear.

Shared by ``tests/robustness/test_recipe_fuzz.py`` and ``benchmarks/fuzz_recipes.py``.
Every generated case is bad by construction: it must end in a :class:`kprune.KPruneError`
whose message names the key path (and, for recipe keys, what is allowed), raised while
validating the recipe, wrapping a tiny model, or pruning it once.
"""

from __future__ import annotations

import copy

import keras
from hypothesis import strategies as st

from kprune.config import schema as S
from kprune.errors import KPruneError, RecipeError
from kprune.config.recipe import ROOT

BASE = {
    "model": {"name": "lenet5", "input_shape": [12, 12, 1], "num_classes": 3},
    "data": {"name": "fashion_mnist", "batch_size": 8, "take": 16},
    "train": {"epochs": 0, "optimizer": {"name": "sgd", "learning_rate": 0.01}},
    "prune": {"criterion": "l1", "granularity": "filter", "scope": "layerwise",
              "schedule": {"name": "agp", "start_step": 0, "end_step": 4, "frequency": 1},
              "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5},
                              {"op_names": ["fc"], "sparsity": 0.25, "granularity": "weight"}]},
    "finetune": {"epochs": 1},
    "export": {"quantize": "none", "benchmark": {"threads": [1], "runs": 5}},
    "seed": 0,
}

#: words with which a clear message says what is allowed or expected
ALLOWED_WORDS = ("allowed", "must", "one of", "needs", "only", "supports", "expected", "give ", "set ",
                 "use ", "layer types present", "prunable types", "layers:", "malformed yaml")


def tiny_model():
    """Conv2D c1 → BN → ReLU → Conv2D c2 → GAP → Dense fc → Dense out (functional)."""
    inp = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(4, 3, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def _leaf_fields(section: S.Section, path: str = ""):
    for key, field in section.fields.items():
        sub = f"{path}.{key}" if path else key
        if field.kind == "dict" and field.section is not None:
            yield from _leaf_fields(field.section, sub)
        yield sub, field


FIELDS = [(p, f) for p, f in _leaf_fields(ROOT) if f.kind != "custom"]


def _entry_section():
    return ROOT.fields["prune"].section.fields["config_list"].item.section


def _wrong_values(field: S.Field):
    """Values that ``field`` must refuse."""
    wrong = {"int": ["three", [1], {"a": 1}, 1.5, True],
             "float": ["half", [0.5], {"x": 1}, True],
             "bool": ["yes", 1, 0.0, [True]],
             "str": [3, 0.5, ["a"], {"a": "b"}, True],
             "list": ["abc", 3, {"a": 1}],
             "dict": ["abc", 3, [1, 2]]}[field.kind]
    if not field.nullable:
        wrong = wrong + [None]
    if field.choices:
        wrong = wrong + ["not-a-choice", field.choices[0].upper() + "_X"]
    if field.low is not None and field.kind in ("int", "float"):
        wrong = wrong + [field.low - 1 if field.kind == "int" else field.low - 0.5]
    if field.high is not None:
        wrong = wrong + ([field.high] if field.high_open else []) + [field.high + 1.5]
    return wrong


def _set(data: dict, path: str, value):
    from kprune.config.recipe import _split_path
    parts = _split_path(path)
    cur = data
    for p in parts[:-1]:
        if isinstance(cur, dict) and not isinstance(cur.get(p), (dict, list)):
            cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return data


@st.composite
def wrong_type(draw):
    path, field = draw(st.sampled_from(FIELDS))
    value = draw(st.sampled_from(_wrong_values(field)))
    return "wrong type or value", _set(copy.deepcopy(BASE), path, value), path


@st.composite
def wrong_entry_value(draw):
    section = _entry_section()
    key = draw(st.sampled_from(sorted(section.fields)))
    value = draw(st.sampled_from(_wrong_values(section.fields[key])))
    data = copy.deepcopy(BASE)
    data["prune"]["config_list"][0][key] = value
    return "wrong type or value", data, f"prune.config_list[0].{key}"


SECTIONS = ["", "model", "data", "train", "train.optimizer", "prune", "finetune", "export",
            "export.benchmark", "prune.config_list[0]", "prune.schedule"]


@st.composite
def unknown_key(draw):
    where = draw(st.sampled_from(SECTIONS))
    key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12))
    data = copy.deepcopy(BASE)
    target = data
    if where:
        from kprune.config.recipe import _split_path
        for p in _split_path(where):
            target = target[p]
    if key in target or key in _known(where):
        key = key + "_zz"
    target[key] = draw(st.sampled_from([1, "x", None, [1], {"a": 1}]))
    return "unknown key", data, f"{where}.{key}" if where else key


def _known(where):
    if where == "prune.schedule":
        from kprune import schedules
        return set(schedules.get({"name": "agp", "start_step": 0, "end_step": 4}).SCHEMA.fields)
    return set()


@st.composite
def bad_sparsity(draw):
    value = draw(st.one_of(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                           st.floats(min_value=1.0, allow_nan=False, allow_infinity=False),
                           st.just(float("nan")), st.sampled_from(["50%", "half"])))
    key = draw(st.sampled_from(["sparsity", "total_sparsity"]))
    data = copy.deepcopy(BASE)
    entry = data["prune"]["config_list"][0]
    entry.pop("sparsity")
    entry[key] = value
    if key == "total_sparsity":
        data["prune"]["scope"] = "global"
    return "sparsity out of range", data, f"prune.config_list[0].{key}"


@st.composite
def empty_selector(draw):
    entry = draw(st.sampled_from([{"sparsity": 0.5}, {"op_types": [], "sparsity": 0.5},
                                  {"op_names": [], "op_names_re": [], "sparsity": 0.5},
                                  {"op_types": None, "sparsity": 0.5}, {}]))
    data = copy.deepcopy(BASE)
    data["prune"]["config_list"][0] = entry
    return "empty selector", data, "prune.config_list[0]"


@st.composite
def selector_matching_nothing(draw):
    entry = draw(st.sampled_from([
        {"op_names": ["no_such_layer"], "sparsity": 0.5},
        {"op_types": ["LSTM"], "sparsity": 0.5},
        {"op_types": ["conv2d"], "sparsity": 0.5},
        {"op_names_re": ["zzz.*"], "sparsity": 0.5},
        {"op_types": ["Conv2D"], "op_names": ["fc"], "sparsity": 0.5},
        {"op_types": ["BatchNormalization"], "sparsity": 0.5},
        {"op_names": ["gap"], "sparsity": 0.5},
        {"op_names_re": ["[unclosed"], "sparsity": 0.5},
    ]))
    data = copy.deepcopy(BASE)
    data["prune"]["config_list"][0] = entry
    return "selector matching nothing or unprunable", data, "prune.config_list[0]"


CONTRADICTIONS = [
    (("prune", "config_list", 0), {"op_types": ["Conv2D"], "sparsity": 0.5, "total_sparsity": 0.5},
     "prune.config_list[0]"),
    (("prune", "config_list", 0), {"op_types": ["Conv2D"], "total_sparsity": 0.5}, "prune.config_list[0].total_sparsity"),
    (("prune", "criterion"), "slim", "prune.scope"),                   # slim is global by definition
    (("prune", "criterion"), "apoz", "prune.config_list[1].granularity"),
    (("prune", "scope"), "global", "prune.scope"),                     # with a layerwise-only criterion (below)
    (("prune", "granularity"), "2:4", "prune.config_list[0]"),         # c1 has 1 input channel
    (("prune", "block_shape"), [0, 4], "prune.block_shape"),
    (("prune", "block_shape"), [1, 2, 3], "prune.block_shape"),
    (("prune", "schedule"), {"name": "agp", "start_step": 5, "end_step": 2}, "prune.schedule"),
    (("prune", "schedule"), {"name": "no_such_schedule"}, "prune.schedule.name"),
    (("prune", "schedule"), "cubic", "prune.schedule"),
    (("prune", "schedule"), {"name": "agp", "start_epoch": 0, "end_step": 4}, "prune.schedule"),
    (("prune", "search"), {"name": "no_such_search"}, "prune.search"),
    (("prune", "search"), {"name": "sensitivity", "no_such_option": 1}, "prune.search"),
    (("prune", "config_list"), [], "prune.config_list"),
    (("prune", "config_list"), [{"op_types": ["Dense"], "sparsity": 0.3, "granularity": "2:4"}], "prune.config_list[0]"),
    (("prune", "config_list"), [{"op_types": ["Conv2D"], "sparsity": 0.5}, {"op_types": ["Conv2D", "Dense"], "exclude": True}],
     "prune.config_list"),
    (("prune", "granularity"), "4:2", "prune.granularity"),
    (("prune", "granularity"), "voxel", "prune.granularity"),
    (("model", "width"), 0.0, "model.width"),
]


@st.composite
def contradiction(draw):
    where, value, path = draw(st.sampled_from(CONTRADICTIONS))
    data = copy.deepcopy(BASE)
    target = data
    for p in where[:-1]:
        target = target[p]
    target[where[-1]] = copy.deepcopy(value)
    if where == ("prune", "scope"):  # global scope with a layerwise-only criterion
        data["prune"]["criterion"] = "layerwise_magnitude"
        data["prune"]["granularity"] = "weight"
        path = "prune.scope"
    return "contradictory settings", data, path


MALFORMED = [
    "prune: {criterion: l1\n", "prune:\n  criterion: [l1\n", "prune:\n\tcriterion: l1\n",
    "prune: {config_list: [{op_types: [Conv2D], sparsity: 0.5}]}}\n", ": : :\n", "- a\n- b\n",
    "prune: !!python/object/apply:os.system ['echo pwned']\n", "just a string\n",
    "prune:\n  criterion: l1\n criterion: l2\n", "'unterminated\n", "prune: &a [*a]\n", "42\n",
    "prune: !!binary AAAA\n", "prune: {criterion: l1, criterion: }\n  - x\n",
]


@st.composite
def malformed_yaml(draw):
    return "malformed YAML", draw(st.sampled_from(MALFORMED)), ""


@st.composite
def random_yaml_text(draw):
    """Random text: usually broken YAML, sometimes a valid (e.g. empty) recipe, which may pass."""
    text = draw(st.text(alphabet="{}[]:,-'\"!&*#|>\t\n abc%@`", min_size=1, max_size=40))
    return "random YAML text", text, ""


BAD_RECIPES = st.one_of(wrong_type(), wrong_entry_value(), unknown_key(), bad_sparsity(), empty_selector(),
                        selector_matching_nothing(), contradiction(), malformed_yaml(),
                        random_yaml_text())


def attempt(case, model_factory=tiny_model):
    """Loads the recipe, wraps a tiny model and prunes once; returns the exception or None."""
    import kprune
    from kprune.config.recipe import Recipe
    _, payload, _ = case
    try:
        if isinstance(payload, str):
            recipe = Recipe.from_yaml(payload)
        else:
            recipe = Recipe.from_dict(payload)
        model = kprune.wrap(model_factory(), recipe)
        kprune.Pruner(model).prune_now()
    except Exception as e:  # noqa: BLE001 - classified by the caller
        return e
    return None


def clear_error(case, err) -> tuple:
    """(ok, reason): the error is a KPruneError naming the path and what is allowed."""
    category, payload, path = case
    if err is None and category == "random YAML text":
        return True, "valid"
    if err is None:
        return False, "no error for a bad recipe"
    if not isinstance(err, KPruneError):
        return False, f"{type(err).__name__} is not a KPruneError: {err}"
    text = str(err)
    if isinstance(payload, str):  # malformed YAML: whatever kprune says about it, mapping or line
        return (isinstance(err, RecipeError), "YAML failure is not a RecipeError")
    if path and path not in text:
        return False, f"message does not name `{path}`: {text}"
    if not any(w in text.lower() for w in ALLOWED_WORDS):
        return False, f"message does not say what is allowed: {text}"
    return True, ""
