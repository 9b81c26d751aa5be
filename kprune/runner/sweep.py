"""The sweep file: one base recipe × pruners × targets × seeds, validated like a recipe.

A sweep is YAML (or a dict with the same structure)::

    name: fmnist-cpu                 # default: the file's stem
    recipe: ../quickstart.yaml       # the base recipe: a path (relative to the sweep file) or a mapping
    pruners:                         # each: a name + recipe overrides (dotted key -> value)
      - {name: l1, set: {prune.criterion: l1}}
      - {name: sa, set: {prune.search: {name: simulated_annealing, eval_take: 500}}}
    targets:                         # one or more kinds, each a list of values
      sparsity: [0.3, 0.5, 0.7]      # per-layer sparsity (searches: params budget 1 - s, as NNI's comparison)
      flops: [0.5, 0.25]             # budgets: fraction of the dense model's (<= 1) or absolute (> 1)
    seeds: [0, 1, 2]
    baselines: {random: true, uniform_width: true, scratch: true, scratch_of: null, match: flops}
    threads: null                    # TensorFlow threads per cell (default: cores // jobs)

Errors name the key path (``pruners[1].set.prune.search.cool_down: unknown key ...``), the
value received and what is allowed, with the YAML line when known.
"""

from __future__ import annotations

import copy
import json
import os


from kprune.config import schema as S
from kprune.errors import RecipeError
from kprune.config.recipe import Recipe, apply_overrides

F = S.Field

TARGET_KINDS = ("sparsity", "params", "flops", "latency")
BASELINE_NAMES = ("random", "uniform-width", "scratch")


def _unique_names(value):
    names = [p.get("name") for p in value if isinstance(p, dict)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        return f"pruner names must be unique; repeated: {dup}."
    bad = [n for n in names if n in ("dense", "uniform-width") or str(n).startswith("scratch")]
    if bad:
        return f"`dense`, `uniform-width` and `scratch...` name baselines; rename the pruners {bad}."
    if any("/" in str(n) or os.sep in str(n) for n in names):
        return "pruner names become folder names: no `/` allowed."
    return None


def _nonempty(value):
    return "must not be empty." if not value else None


def _target_check(value):
    if not value:
        return f"give at least one target kind: {list(TARGET_KINDS)}."
    for kind, values in value.items():
        if kind == "sparsity" and any(not 0.0 <= v < 1.0 for v in values):
            return "sparsity values must lie in [0, 1)."
        if kind != "sparsity" and any(v <= 0 for v in values):
            return f"{kind} budgets must be > 0 (a fraction <= 1 of the dense model, or an absolute value > 1)."
    return None


PRUNER = S.Section({
    "name": F("str", S.REQUIRED, doc="the pruner's name (a folder name and the plot legend)"),
    "set": F("any", {}, doc="recipe overrides: dotted key path -> value"),
}, doc="one pruner")

TARGETS = S.Section({kind: F("list", None, item=F("float"), nullable=True, check=_nonempty,
                             doc=f"{kind} targets") for kind in TARGET_KINDS}, doc="targets by kind")

BASELINES = S.Section({
    "random": F("bool", True, doc="the random criterion, pruned like every other pruner"),
    "uniform_width": F("bool", True, doc="a dense zoo model whose width matches the target, same total budget"),
    "scratch": F("bool", True, doc="each pruned architecture re-initialized and trained from scratch, same total budget"),
    "scratch_of": F("list", None, item=F("str"), nullable=True,
                    doc="the pruners whose architectures are trained from scratch (default: all)"),
    "match": F("str", "flops", choices=("params", "flops"), doc="what uniform-width matches"),
}, doc="baselines added to every sweep")

SWEEP = S.Section({
    "name": F("str", None, nullable=True, doc="the sweep's name (default: the file's stem)"),
    "recipe": F("any", S.REQUIRED, doc="the base recipe: a path or a mapping"),
    "pruners": F("list", S.REQUIRED, item=F("dict", section=PRUNER), check=_unique_names),
    "targets": F("dict", S.REQUIRED, section=TARGETS, check=lambda v: _target_check(
        {k: x for k, x in v.items() if x is not None})),
    "seeds": F("list", [0], item=F("int"), check=_nonempty),
    "baselines": F("dict", {}, section=BASELINES),
    "threads": F("int", None, low=1, nullable=True, doc="TensorFlow threads per cell (default: cores // jobs)"),
}, doc="a comparison sweep")


class Sweep:
    """A validated sweep: the base recipe (a :class:`kprune.Recipe`), pruners, targets, seeds.

    Build it with :meth:`load` (a path, YAML text or dict). ``pruners`` includes the
    ``random`` baseline when it is on; ``targets`` is a list of ``(kind, value)``.
    """

    def __init__(self, data: dict, source: str | None = None, lines: dict | None = None, overrides=()):
        lines = lines or {}
        cfg = S.validate_section(data, SWEEP, "", lines)
        folder = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
        self.source = source
        self.config = cfg
        self.name = cfg["name"] or (os.path.splitext(os.path.basename(source))[0] if source else "sweep")
        self.recipe = _base_recipe(cfg["recipe"], folder, lines)
        if overrides:
            self.recipe = self.recipe.with_overrides(overrides)
        self.seeds = list(dict.fromkeys(cfg["seeds"]))
        self.targets = [(k, float(v)) for k in TARGET_KINDS for v in (cfg["targets"][k] or [])]
        self.baselines = cfg["baselines"]
        self.threads = cfg["threads"]
        pruners = [dict(p, set=_check_set(p["set"], f"pruners[{i}].set", lines)) for i, p in enumerate(cfg["pruners"])]
        if self.baselines["random"] and "random" not in {p["name"] for p in pruners}:
            pruners.append({"name": "random", "set": {"prune.criterion": "random"}, "baseline": True})
        self.pruners = pruners
        names = {p["name"] for p in pruners}
        for j, n in enumerate(self.baselines["scratch_of"] or []):
            if n not in names:
                raise RecipeError(f"baselines.scratch_of[{j}]", f"names no pruner. Allowed: {sorted(names)}.", n,
                                  line=lines.get(f"baselines.scratch_of[{j}]"))
        for i, p in enumerate(pruners):  # every cell's recipe must validate now, not hours later
            for kind, value in self.targets:
                try:
                    cell_recipe(self.recipe, p, kind, value, seed=self.seeds[0])
                except RecipeError as e:
                    where = f"pruners[{i}].set" if not p.get("baseline") else "baselines.random"
                    raise RecipeError(where, f"(pruner `{p['name']}`, target {kind}={value:g}) {e}",
                                      line=lines.get(f"pruners[{i}]")) from None

    @classmethod
    def load(cls, value, overrides=()) -> "Sweep":
        """Reads a sweep from a YAML path, YAML text, a dict or a Sweep.

        Args:
            value: the sweep.
            overrides: ``key.path=value`` strings applied to the base recipe (e.g.
                ``["model.name=vgg16"]``), as ``kprune-cli compare --set`` does.

        Example:
            >>> sweep = Sweep.load("recipes/compare/tiny.yaml")
            >>> [p["name"] for p in sweep.pruners]
            ['l1', 'fpgm', 'random']
        """
        if isinstance(value, Sweep):
            if overrides:
                raise RecipeError("", "overrides apply when a sweep is read; pass the file or dict, not a Sweep.")
            return value
        if isinstance(value, dict):
            return cls(copy.deepcopy(value), overrides=overrides)
        if not isinstance(value, (str, os.PathLike)):
            raise RecipeError("", "a sweep must be a path to a YAML file, YAML text or a mapping.", value)
        from kprune.config.recipe import read_yaml
        data, lines, source = read_yaml(value, "sweep")
        return cls(data, source=source, lines=lines, overrides=overrides)

    def to_dict(self) -> dict:
        """The validated sweep as plain data, with the base recipe expanded."""
        return {"name": self.name, "recipe": self.recipe.to_dict(), "pruners": copy.deepcopy(self.pruners),
                "targets": [list(t) for t in self.targets], "seeds": list(self.seeds),
                "baselines": dict(self.baselines), "threads": self.threads}


def _base_recipe(value, folder: str, lines: dict) -> Recipe:
    if isinstance(value, str):
        path = value if os.path.isabs(value) else os.path.join(folder, value)
        if not os.path.exists(path):
            raise RecipeError("recipe", f"the base recipe file does not exist ({path}); give a path relative "
                              "to the sweep file or an inline mapping.", value, line=lines.get("recipe"))
        return Recipe.from_yaml(path)
    if isinstance(value, dict):
        try:
            return Recipe.from_dict(value)
        except RecipeError as e:
            raise RecipeError(f"recipe.{e.path}" if e.path else "recipe", str(e).split(": ", 1)[-1],
                              line=lines.get(f"recipe.{e.path}")) from None
    raise RecipeError("recipe", "must be a path to a recipe YAML or a mapping.", value, line=lines.get("recipe"))


def _check_set(value, path: str, lines: dict) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise RecipeError(path, "must be a mapping of dotted recipe keys to values, e.g. "
                          "{prune.criterion: l2}.", value, line=lines.get(path))
    return dict(value)


def overrides(settings: dict) -> list:
    """``{dotted.key: value}`` as ``key=value`` strings for :func:`kprune.config.recipe.apply_overrides`
    (values written as JSON, which YAML reads back exactly)."""
    return [f"{k}={json.dumps(v)}" for k, v in settings.items()]


def cell_recipe(base: Recipe, pruner: dict, kind: str, value: float, seed: int, dense_path: str | None = None) -> Recipe:
    """The recipe of one pruning cell: base + pruner overrides + target + seed (+ the shared dense model).

    A ``sparsity`` target sets every (non-exclude) ``config_list`` entry's ``sparsity`` (or
    ``total_sparsity``); for a pruner with a search it becomes a params budget ``1 - s``
    (overall parameter sparsity, as NNI's comparison reports its searches). A params /
    FLOPs / latency target is the budget of the pruner's search, or of the ``uniform``
    search (one sparsity for every unit, sized to the budget) for a pruner without one.

    Args:
        base: the sweep's base recipe.
        pruner: ``{"name", "set"}``.
        kind, value: the target.
        seed: the cell's seed (``seed`` and ``prune.seed``).
        dense_path: the trained dense ``.keras`` every cell starts from (``train.epochs`` set to 0).

    Returns:
        A validated :class:`kprune.Recipe`.
    """
    data = apply_overrides(base._raw, overrides(pruner["set"]))
    data["seed"] = int(seed)
    prune = data.setdefault("prune", {})
    prune["seed"] = int(seed)
    search = prune.get("search")
    if isinstance(search, str):
        search = {"name": search}
    if kind == "sparsity":
        if search:
            prune["search"] = dict(search, constraint="params", budget=round(1.0 - value, 12))
        else:
            entries = prune.get("config_list") or Recipe.from_dict({}).prune["config_list"]
            prune["config_list"] = [_with_sparsity(e, value) for e in copy.deepcopy(entries)]
    else:
        prune["search"] = dict(search or {"name": "uniform"}, constraint=kind, budget=value)
    if dense_path is not None:
        data.setdefault("model", {})["name"] = os.path.abspath(dense_path)
        data.setdefault("train", {})["epochs"] = 0
    return Recipe(data)


def _with_sparsity(entry: dict, value: float) -> dict:
    if entry.get("exclude"):
        return entry
    if entry.get("total_sparsity") is not None:
        return dict(entry, total_sparsity=value)
    return dict(entry, sparsity=value)


def no_prune(data: dict) -> dict:
    """A recipe's raw dict with pruning turned into a no-op (weight granularity at sparsity 0 on
    every Conv2D/Dense: the pipeline trains, counts and exports the model as it is)."""
    data = copy.deepcopy(data)
    data["prune"] = {"criterion": "level", "granularity": "weight", "schedule": {"name": "oneshot"},
                     "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.0}]}
    data["finetune"] = dict(data.get("finetune") or {}, epochs=0)
    return data
