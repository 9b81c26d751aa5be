"""Issue 17: kprune.wrap's keyword short form (TFMOT's prune_low_magnitude(model, ...) style)."""

import keras
import numpy as np
import pytest

import kprune
from kprune.wrappers.wrap import find_wrappers


def _cnn():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(6, name="fc")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x))


def _specs(model):
    return {w.name: w.spec for w in find_wrappers(model)}


def test_short_form_equals_the_recipe_form_with_l1_filter_defaults():
    model = _cnn()
    short = kprune.wrap(model, sparsity=0.5)
    long = kprune.wrap(model, {"prune": {"criterion": "l1", "granularity": "filter", "schedule": {"name": "oneshot"},
                                         "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.5}]}})
    assert _specs(short) == _specs(long)
    selected = {n: s for n, s in _specs(short).items() if s}
    assert {s["criterion"] for s in selected.values()} == {"l1"}
    assert {s["granularity"] for s in selected.values()} == {"filter"}


def test_short_form_user_path_halves_filters_and_keeps_the_classes():
    model = kprune.wrap(_cnn(), sparsity=0.5, exclude="fc")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.random.rand(16, 8, 8, 1).astype("float32"), np.random.randint(0, 3, 16)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[kprune.PruningCallback()])
    small = kprune.compact(model)
    assert small.get_layer("conv1").filters == 4 and small.get_layer("conv2").filters == 4
    assert small.get_layer("fc").units == 6                      # excluded
    assert small.get_layer("predictions").units == 3             # reaches the output: never pruned
    np.testing.assert_allclose(kprune.strip(model).predict(x, verbose=0), small.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_other_keywords_reach_the_recipe():
    model = kprune.wrap(_cnn(), sparsity=0.25, criterion="l2", granularity="weight", op_types="Dense",
                        schedule={"name": "agp", "start_step": 0, "end_step": 10, "frequency": 2})
    selected = {n: s for n, s in _specs(model).items() if s}
    assert set(selected) == {"fc", "predictions"}
    assert {(s["criterion"], s["granularity"], s["sparsity"]) for s in selected.values()} == {("l2", "weight", 0.25)}


@pytest.mark.parametrize("kwargs,keyword,received", [
    ({"sparsity": 0.5, "criterion": "l9"}, "criterion", "'l9'"),
    ({"sparsity": 1.5}, "sparsity", "1.5"),
    ({"sparsity": 0.5, "granularity": "rows"}, "granularity", "'rows'"),
    ({"sparsity": 0.5, "schedule": "agp"}, "schedule", "'agp'"),
    ({"sparsity": 0.5, "roundto": 8}, "roundto", "8"),
    ({"sparsity": 0.5, "op_types": ["Conv9D"]}, "op_types", "['Conv9D']"),
    ({}, "sparsity", "None"),
])
def test_errors_name_the_keyword(kwargs, keyword, received):
    with pytest.raises(kprune.KPruneError) as err:     # RecipeError, or the selector's error for op_types
        kprune.wrap(_cnn(), **kwargs)
    text = str(err.value)
    assert text.startswith(f"kprune.wrap(model, {keyword}=...)"), text
    assert f"Received: {keyword}={received}" in text, text


def test_recipe_and_keywords_together_is_an_error():
    with pytest.raises(TypeError, match="not both. Received: recipe and sparsity="):
        kprune.wrap(_cnn(), {"prune": {}}, sparsity=0.5)


def test_exclude_of_an_unknown_layer_names_the_keyword():
    with pytest.raises(kprune.KPruneError) as err:
        kprune.wrap(_cnn(), sparsity=0.5, exclude=["nope"])
    text = str(err.value)
    assert text.startswith("kprune.wrap(model, exclude=...)") and "no layer named `nope`" in text, text
