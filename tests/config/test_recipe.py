import textwrap

import pytest

import kprune
from kprune.errors import RecipeError
from kprune.config.recipe import Recipe, apply_overrides


def test_defaults_filled_from_empty_dict():
    r = Recipe.from_dict({})
    assert r.prune["criterion"] == "level"
    assert r.prune["schedule"] == {"name": "oneshot", "at_step": None, "at_epoch": None}
    assert r.train["optimizer"]["name"] == "sgd"
    assert r.export["quantize"] == "none"


def test_prune_only_recipe_from_yaml_string():
    r = Recipe.from_yaml(textwrap.dedent("""
        prune:
          criterion: l1
          granularity: filter
          config_list:
            - {op_types: [Conv2D], sparsity: 0.5}
            - {op_names: [conv1], exclude: true}
    """))
    assert r.prune["config_list"][0]["sparsity"] == 0.5
    assert r.prune["config_list"][1]["exclude"] is True


def test_unknown_key_names_path_line_and_allowed(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("prune:\n  criterion: l1\n  sparsty: 0.5\n")
    with pytest.raises(RecipeError) as e:
        Recipe.from_yaml(str(p))
    msg = str(e.value)
    assert "prune.sparsty" in msg and "line 3" in msg and "config_list" in msg


def test_wrong_type_and_range_errors_name_value_and_allowed():
    with pytest.raises(RecipeError, match=r"prune\.config_list\[0\]\.sparsity.*\[0\.0, 1\.0\).*sparsity=1\.5"):
        Recipe.from_dict({"prune": {"config_list": [{"op_types": ["Dense"], "sparsity": 1.5}]}})
    with pytest.raises(RecipeError, match=r"data\.batch_size.*integer.*'big'"):
        Recipe.from_dict({"data": {"batch_size": "big"}})
    with pytest.raises(RecipeError, match=r"prune\.criterion.*unknown criterion.*l1.*'l7'"):
        Recipe.from_dict({"prune": {"criterion": "l7"}})
    with pytest.raises(RecipeError, match=r"prune\.scope.*layerwise.*global"):
        Recipe.from_dict({"prune": {"scope": "everywhere"}})


def test_entry_needs_exactly_one_target_and_a_selector():
    with pytest.raises(RecipeError, match="exactly one of `sparsity`"):
        Recipe.from_dict({"prune": {"config_list": [{"op_types": ["Dense"]}]}})
    with pytest.raises(RecipeError, match="selects nothing"):
        Recipe.from_dict({"prune": {"config_list": [{"sparsity": 0.5}]}})
    with pytest.raises(RecipeError, match="scope: global"):
        Recipe.from_dict({"prune": {"config_list": [{"op_types": ["Dense"], "total_sparsity": 0.5}]}})
    r = Recipe.from_dict({"prune": {"scope": "global",
                                    "config_list": [{"op_types": ["Dense"], "total_sparsity": 0.5}]}})
    assert r.prune["config_list"][0]["total_sparsity"] == 0.5


def test_schedule_validation():
    r = Recipe.from_dict({"prune": {"schedule": {"name": "agp", "start_epoch": 0, "end_epoch": 4}}})
    assert r.prune["schedule"]["frequency"] == 1 and r.prune["schedule"]["power"] == 3.0
    with pytest.raises(RecipeError, match=r"prune\.schedule\.name.*unknown schedule.*agp"):
        Recipe.from_dict({"prune": {"schedule": {"name": "linear"}}})
    with pytest.raises(RecipeError, match="end_step or end_epoch"):
        Recipe.from_dict({"prune": {"schedule": {"name": "agp"}}})
    with pytest.raises(RecipeError, match="mixes step keys"):
        Recipe.from_dict({"prune": {"schedule": {"name": "agp", "start_step": 0, "end_epoch": 3}}})
    with pytest.raises(RecipeError, match=r"prune\.schedule\.warp.*unknown key"):
        Recipe.from_dict({"prune": {"schedule": {"name": "oneshot", "warp": 1}}})


def test_malformed_yaml_has_line():
    with pytest.raises(RecipeError, match=r"malformed YAML.*line 2|line 3"):
        Recipe.from_yaml("prune:\n  criterion: [l1\n  x: 1\n")


def test_overrides_parse_yaml_values_and_lists():
    data = apply_overrides({"prune": {"config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}},
                           ["prune.config_list[0].sparsity=0.7", "train.epochs=3", "prune.round_to=8"])
    assert data["prune"]["config_list"][0]["sparsity"] == 0.7
    assert data["train"]["epochs"] == 3
    r = Recipe.from_dict(data).with_overrides(["prune.criterion=l2"])
    assert r.prune["criterion"] == "l2" and r.prune["round_to"] == 8
    with pytest.raises(RecipeError, match="key.path=value"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(RecipeError, match=r"train\.epoch.*unknown key"):
        Recipe.from_dict({}).with_overrides(["train.epoch=3"])


def test_shipped_recipes_validate():
    import glob
    files = sorted(glob.glob("recipes/*.yaml"))
    assert files, "recipes/ must hold example recipes"
    for f in files:
        assert isinstance(Recipe.from_yaml(f), Recipe)


def test_coerce_and_roundtrip(tmp_path):
    r = Recipe.from_dict({"prune": {"criterion": "l2", "granularity": "filter"}})
    p = tmp_path / "r.yaml"
    p.write_text(r.to_yaml())
    assert Recipe.coerce(str(p)).to_dict() == r.to_dict()
    assert Recipe.coerce(r) is r
    with pytest.raises(RecipeError):
        Recipe.coerce(42)
    assert kprune.Recipe is Recipe


def test_recipes_readme_documents_every_key():
    from kprune.config import recipe as R, schema as S
    text = open("recipes/README.md", encoding="utf-8").read()

    def walk(sec, prefix):
        for k, f in sec.fields.items():
            p = f"{prefix}.{k}" if prefix else k
            if f.kind == "dict" and f.section is not None:
                yield from walk(f.section, p)
                continue
            yield p
            if f.kind == "list" and f.item is not None and f.item.section is not None:
                yield from walk(f.item.section, p + "[i]")

    missing = [p for p in walk(R.ROOT, "") if f"`{p}`" not in text]
    assert not missing, f"recipes/README.md does not document: {missing}"


def test_finetune_distill_is_off_by_default_and_validated():
    assert Recipe.from_dict({}).finetune["distill"] is None
    assert Recipe.from_dict({"finetune": {"distill": {}}}).finetune["distill"] == {"alpha": 0.5, "temperature": 4.0}
    r = Recipe.from_yaml("finetune: {epochs: 2, distill: {alpha: 0.3, temperature: 2}}")
    assert r.finetune["distill"] == {"alpha": 0.3, "temperature": 2.0}
    bad = [({"alpha": 1.5}, r"finetune\.distill\.alpha.*<= 1\.0 \(allowed range \[0\.0, 1\.0\]\).*alpha=1\.5"),
           ({"alpha": -0.1}, r"finetune\.distill\.alpha.*>= 0\.0.*alpha=-0\.1"),
           ({"alpha": "half"}, r"finetune\.distill\.alpha.*must be a number.*alpha='half'"),
           ({"temperature": 0}, r"finetune\.distill\.temperature.*must be > 0.*temperature=0\.0"),
           ({"temperature": -3}, r"finetune\.distill\.temperature.*must be > 0.*temperature=-3\.0"),
           ({"temp": 4}, r"finetune\.distill\.temp.*unknown key.*alpha, temperature"),
           (0.5, r"finetune\.distill.*must be a mapping.*distill=0\.5")]
    for value, pattern in bad:
        with pytest.raises(RecipeError, match=pattern):
            Recipe.from_dict({"finetune": {"distill": value}})
    with pytest.raises(RecipeError, match=r"train\.distill.*unknown key"):  # the dense model has no teacher
        Recipe.from_dict({"train": {"distill": {}}})


@pytest.mark.parametrize("bad", ["eight", 0, 2.5, True])
def test_round_to_is_auto_or_a_positive_integer(bad):
    assert kprune.Recipe.from_dict({"prune": {}}).prune["round_to"] == "auto"
    assert kprune.Recipe.from_dict({"prune": {"round_to": 8}}).prune["round_to"] == 8
    with pytest.raises(RecipeError, match=r"prune\.round_to.*auto.*integer >= 1.*Received"):
        kprune.Recipe.from_dict({"prune": {"round_to": bad}})
