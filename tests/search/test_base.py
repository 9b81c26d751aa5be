"""Search infrastructure: units, exact cost model, candidates, budgets, tightening, recipes."""

import json

import keras
import numpy as np
import pytest
from search_fixtures import PRUNE, OutputMatch, tiny_cnn

import kprune
from kprune import search
from kprune.errors import KPruneError, RecipeError
from kprune.search.candidates import CandidateBuilder
from kprune.search.cost import CostModel, measure, resolve_budget
from kprune.search.units import allocation_recipe, find_units, layer_allocation


@pytest.fixture(scope="module")
def resnet():
    keras.utils.set_random_seed(0)
    return kprune.models.get("resnet20", input_shape=(16, 16, 3), num_classes=10, width=0.25)


def test_units_are_channel_groups(resnet):
    units = find_units(resnet, kprune.Recipe.from_dict({"prune": PRUNE}).prune)
    by_name = {u.name: u for u in units}
    # the residual producers of stage 1 share one unit named after the stem conv
    assert by_name["conv1"].layers == ("conv1", "stage1_block1_conv2", "stage1_block2_conv2", "stage1_block3_conv2")
    assert by_name["conv1"].size == 4
    assert by_name["stage3_block1_conv1"].size == 16
    # 3 residual groups + 9 first convs of the blocks; the classifier (output) is no unit
    assert len(units) == 12
    assert all(u.criterion == "l1" for u in units)
    la = layer_allocation(units, {"conv1": 0.5})
    assert la["stage1_block3_conv2"] == 0.5 and la["stage2_block1_conv1"] == 0.0


def test_cost_model_is_exact_on_compacted_resnet(resnet):
    prune = kprune.Recipe.from_dict({"prune": PRUNE}).prune
    units = find_units(resnet, prune)
    cm = CostModel(resnet, units, prune)
    c = kprune.count(resnet)
    assert cm.original == {"params": c.params, "flops": c.flops} == {"params": 17926, "flops": 1317184}
    builder = CandidateBuilder(resnet, prune, units)
    rng = np.random.default_rng(1)
    for _ in range(2):
        alloc = {u.name: float(rng.uniform(0, 0.9)) for u in units}
        builder.build(alloc)
        assert cm.predict(alloc) == measure(builder.compact())


def test_cost_model_hand_numbers_tiny():
    model = tiny_cnn()
    prune = kprune.Recipe.from_dict({"prune": PRUNE}).prune
    units = find_units(model, prune)
    assert [(u.name, u.size) for u in units] == [("c1", 8), ("c2", 16), ("c3", 16)]
    cm = CostModel(model, units, prune)
    # c1 keeps 4 of 8: c1 3*3*3*4+4, bn 4*4, c2 3*3*4*16+16, c3 3*3*16*16+16, fc 16*4+4
    assert cm.predict({"c1": 0.5})["params"] == 112 + 16 + 592 + 2320 + 68
    # MACs: c1 144*27*4, c2 144*36*16, c3 36*144*16, fc 64
    assert cm.predict({"c1": 0.5})["flops"] == 2 * (144 * 27 * 4 + 144 * 36 * 16 + 36 * 144 * 16 + 64)


def test_allocation_recipe_rebuilds_the_same_candidate():
    model = tiny_cnn()
    prune = kprune.Recipe.from_dict({"prune": PRUNE}).prune
    units = find_units(model, prune)
    alloc = {"c1": 0.25, "c2": 0.5, "c3": 0.75}
    builder = CandidateBuilder(model, prune, units)
    a = builder.compact() if builder.build(alloc) is not None else None
    wrapped = kprune.wrap(model, allocation_recipe(prune, units, alloc))
    kprune.Pruner(wrapped).prune_now()
    b = kprune.compact(wrapped)
    assert [l.get_config().get("filters") for l in a.layers] == [l.get_config().get("filters") for l in b.layers]
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), rtol=1e-5, atol=1e-6)
    assert kprune.count(b).params == 6 * 27 + 6 + 24 + 8 * 54 + 8 + 4 * 72 + 4 + 4 * 4 + 4


def test_weight_granularity_predicts_nonzero_counts():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(30, name="d1"),
                              keras.layers.Dense(10, name="d2")])
    prune = kprune.Recipe.from_dict({"prune": {"criterion": "level", "granularity": "weight",
                                               "config_list": [{"op_types": ["Dense"], "sparsity": 0.5}]}}).prune
    units = find_units(model, prune)
    assert [(u.name, u.size) for u in units] == [("d1", 600), ("d2", 300)]
    cm = CostModel(model, units, prune)
    builder = CandidateBuilder(model, prune, units)
    alloc = {"d1": 0.7, "d2": 0.2}
    builder.build(alloc)
    measured = measure(builder.compact(), granularity="weight")
    # biases are initialised to zero, so nonzero params are the kept kernel entries
    assert cm.predict(alloc)["params"] == measured["params"] == 180 + 240
    assert cm.predict(alloc)["flops"] == measured["flops"] == 2 * 420


def test_budgets_fraction_and_absolute():
    assert resolve_budget("params", 0.25, 1000) == 250.0
    assert resolve_budget("flops", 1.0, 1000) == 1000.0
    assert resolve_budget("params", 300, 1000) == 300.0
    with pytest.raises(RecipeError, match="must be > 0"):
        resolve_budget("params", 0.0, 1000)


def test_absolute_params_budget_is_met():
    model = tiny_cnn()
    result = search.run(model, PRUNE, evaluator=OutputMatch(model), name="simulated_annealing",
                        constraint="params", budget=1500, max_evaluations=3, verbose=0)
    assert result.limit == 1500.0
    assert result.cost["params"] <= 1500 and result.met
    assert result.cost["params"] == kprune.count(result.model).params


def test_tighten_moves_toward_max_sparsity():
    alloc = {"a": 0.0, "b": 0.5}
    out = search.tighten(alloc, lambda a: 100 * (2 - a["a"] - a["b"]), 80, 0.9)
    # cost(t) = 100 (1.5 - 1.3 t) <= 80  ->  t >= 0.5385
    t = out["a"] / 0.9
    assert out["b"] == pytest.approx(0.5 + t * 0.4)
    assert t == pytest.approx(0.7 / 1.3, abs=1e-9) and 100 * (2 - out["a"] - out["b"]) <= 80
    assert search.tighten(alloc, lambda a: 10, 80, 0.9) == alloc
    with pytest.raises(KPruneError, match="cannot be met"):
        search.tighten(alloc, lambda a: 100, 80, 0.9)


def test_unreachable_budget_raises():
    model = tiny_cnn()
    with pytest.raises(KPruneError, match="budget cannot be met"):
        search.run(model, PRUNE, evaluator=OutputMatch(model), name="simulated_annealing",
                   constraint="params", budget=0.01, max_evaluations=2, verbose=0)


def test_wrapped_model_is_refused():
    model = tiny_cnn()
    with pytest.raises(KPruneError, match="dense model"):
        search.run(kprune.wrap(model, {"prune": PRUNE}), PRUNE, evaluator=lambda m: 0.0, name="sensitivity")


def test_recipe_validation_names_key_paths():
    ok = kprune.Recipe.from_dict({"prune": {**PRUNE, "search": {"name": "simulated_annealing", "budget": 0.3}}})
    cfg = ok.prune["search"]
    assert cfg["budget"] == 0.3 and cfg["start_temperature"] == 100.0 and cfg["constraint"] == "flops"
    assert cfg["latency"]["tolerance"] == 0.05
    bad = [({"name": "simulated_annealing", "start_temprature": 3}, r"prune\.search\.start_temprature"),
           ({"name": "simulated_annealing", "stop_temperature": 200.0}, r"prune\.search\.stop_temperature"),
           ({"name": "netadapt", "constraint": "energy"}, r"prune\.search\.constraint"),
           ({"name": "sensitivity", "grid": [0.5, 1.2]}, r"prune\.search\.grid"),
           ({"name": "sensitivity", "budget": -1}, r"prune\.search\.budget"),
           ({"name": "sensitivity", "latency": {"runs": 0}}, r"prune\.search\.latency\.runs"),
           ({"name": "anneal"}, r"prune\.search\.name")]
    for value, pattern in bad:
        with pytest.raises(RecipeError, match=pattern):
            kprune.Recipe.from_dict({"prune": {**PRUNE, "search": value}})


def test_get_round_trips_config():
    s = search.get({"name": "netadapt", "step": 0.1, "budget": 0.4})
    assert s.get_config()["step"] == 0.1
    assert type(s).from_config(s.get_config()).get_config() == s.get_config()
    names = search.names()
    assert names == sorted(names) and {"netadapt", "sensitivity", "simulated_annealing", "admm"} <= set(names)


def test_result_files_are_written(tmp_path):
    model = tiny_cnn()
    result = search.run(model, PRUNE, evaluator=OutputMatch(model), name="simulated_annealing",
                        budget=0.5, max_evaluations=2, out_dir=tmp_path, verbose=0)
    summary = json.loads((tmp_path / "search.json").read_text())
    assert summary["allocation"] == result.allocation and summary["met"] is True
    assert summary["cost"]["flops"] <= summary["limit"] == 0.5 * result.original["flops"]
    loaded = keras.saving.load_model(tmp_path / "search_model.keras")
    assert loaded.count_params() == result.cost["params"]


def test_default_evaluator_and_finetune_read_the_recipe_data():
    from kprune.search.evaluation import default_evaluator, default_finetune
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, name="c1")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(h))
    recipe = kprune.Recipe.from_dict({"data": {"name": "fashion_mnist", "batch_size": 32, "take": 256},
                                      "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.1}}})
    evaluate = default_evaluator(recipe, take=64)
    before = evaluate(model)
    assert 0.0 <= before <= 1.0 and abs(before * 64 - round(before * 64)) < 1e-9
    w0 = model.get_layer("c1").kernel.numpy().copy()
    default_finetune(recipe)(model, 2, 0)
    assert not np.allclose(w0, model.get_layer("c1").kernel.numpy())


def test_docs_list_every_search_key():
    from kprune.search.base import COMMON
    text = open("docs/search.md", encoding="utf-8").read()
    keys = [k for k, f in COMMON.items() if f.kind != "dict"]
    keys += [f"latency.{k}" for k in COMMON["latency"].section.fields]
    keys += [f"executor.{k}" for k in COMMON["executor"].section.fields]
    for name in search.names():
        keys += list(search._REGISTRY.lookup(name).FIELDS)
    missing = [k for k in keys if f"`prune.search.{k}`" not in text]
    assert not missing, f"docs/search.md does not document: {missing}"


def test_uniform_baseline_is_the_smallest_common_sparsity():
    model = tiny_cnn()
    r = search.run(model, PRUNE, evaluator=OutputMatch(model), name="uniform", constraint="params",
                   budget=0.5, verbose=0)
    values = set(r.allocation.values())
    assert len(values) == 1 and r.cost["params"] <= 0.5 * r.original["params"] and r.evaluations == 1
    s = values.pop()
    prune = kprune.Recipe.from_dict({"prune": PRUNE}).prune
    cm = CostModel(model, find_units(model, prune), prune)
    # a slightly smaller common sparsity either keeps the same channels or is over the budget
    lower = cm.predict({u: s - 1e-6 for u in r.allocation})["params"]
    assert lower == r.cost["params"] or lower > r.limit


def test_candidates_are_recalibrated_before_scoring():
    from kprune.pruning.batchnorm import recalibrate_bn
    from kprune.search.evaluation import default_recalibration
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, name="c1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.Conv2D(8, 3, strides=2, name="c2")(keras.layers.ReLU()(h))
    h = keras.layers.BatchNormalization(name="bn2")(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(keras.layers.GlobalAveragePooling2D()(h)))
    recipe = {"data": {"name": "fashion_mnist", "batch_size": 32, "take": 256},
              "prune": {**PRUNE, "recalibrate_bn": 3}}
    seen = []

    def record(candidate):
        seen.append(np.array(candidate.get_layer("bn2").layer.moving_mean.numpy()))
        return 0.0

    search.run(model, recipe, evaluator=record, verbose=0, name="sensitivity", constraint="params",
               budget=0.7, grid=[0.5])
    assert len(seen) == 4  # baseline, c1 and c2 at 0.5, the final candidate
    # the dense model's statistics are zeros; each candidate's are its own, from 3 batches
    assert not np.allclose(seen[0], 0.0) and not np.allclose(seen[1], seen[2])
    batches = [x for x, _ in kprune.data.load("fashion_mnist", split="train", batch_size=32, shuffle=False,
                                              take=256, validation_fraction=0.1).take(3)]
    again = kprune.wrap(model, {"prune": PRUNE})
    recalibrate_bn(again, batches, batches=3)
    np.testing.assert_allclose(seen[0], again.get_layer("bn2").layer.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    assert default_recalibration(kprune.Recipe.from_dict(recipe), 0) is None
    # off: the candidates keep the dense model's (zero) moving means
    seen.clear()
    search.run(model, {**recipe, "prune": {**recipe["prune"], "search": {"name": "sensitivity", "recalibrate_bn": 0}}},
               evaluator=record, verbose=0, constraint="params", budget=0.7, grid=[0.5])
    assert all(np.allclose(s, 0.0) for s in seen)
