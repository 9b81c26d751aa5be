"""Recipe and sweep files are bounded: a YAML alias bomb, an oversized file and deep nesting
are clear RecipeErrors in well under a second (the bomb used to grow past 2.3 GB)."""

import time

import pytest

import kprune
from kprune.config import recipe as R
from kprune.errors import RecipeError
from kprune.runner.sweep import Sweep


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nprune: {{criterion: *a{levels - 1}}}\n"


def test_an_alias_bomb_is_refused_fast(tmp_path):
    text = _bomb()
    assert len(text) < 1300  # 9**9 = 387 million values once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    for load in (lambda: kprune.Recipe.from_yaml(str(path)), lambda: kprune.Recipe.from_yaml(text),
                 lambda: Sweep.load(str(path))):
        t0 = time.perf_counter()
        with pytest.raises(RecipeError, match=r"expands to more than 100,000 values \(YAML aliases"):
            load()
        assert time.perf_counter() - t0 < 1.0


def test_a_dict_with_shared_parts_is_counted_expanded():
    leaf = ["x"] * 10
    for _ in range(6):
        leaf = [leaf] * 10         # 10**7 values, 70 distinct objects
    with pytest.raises(RecipeError, match="expands to more than"):
        kprune.Recipe.from_dict({"prune": {"criterion": "l1", "config_list": leaf}})


def test_ordinary_aliases_still_work():
    r = kprune.Recipe.from_yaml("train: {epochs: 1, optimizer: &o {name: sgd, learning_rate: 0.1}}\n"
                                "finetune: {epochs: 1, optimizer: *o}\n")
    assert r.finetune["optimizer"]["learning_rate"] == 0.1
    base = "prune: {criterion: l1, config_list: [&e {op_types: [Dense], sparsity: 0.5}, *e]}\n"
    assert len(kprune.Recipe.from_yaml(base).prune["config_list"]) == 2


def test_an_oversized_recipe_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "MAX_RECIPE_BYTES", 2_000)
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 300 + "prune: {criterion: l1}\n")
    with pytest.raises(RecipeError, match=r"is 3,023 bytes; the limit is 2,000"):
        kprune.Recipe.from_yaml(str(path))


def test_deep_nesting_is_a_recipe_error():
    with pytest.raises(RecipeError, match="nested too deeply"):
        kprune.Recipe.from_yaml("prune: " + "[" * 5000 + "]" * 5000 + "\n")
