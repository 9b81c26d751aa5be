"""Recipes: the YAML (or dict) that says what to prune, how, and the pipeline around it.

A recipe reads like NNI's ``config_list`` plus the experiment around it. Every section is
optional; a recipe used from Python needs only ``prune``. Unknown keys, wrong types and
impossible values raise :class:`kprune.errors.RecipeError` naming the key path, the value
received, what is allowed and, for YAML files, the line.

Example:
    >>> recipe = Recipe.from_dict({"prune": {"criterion": "l1", "granularity": "filter",
    ...     "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}})
    >>> recipe.prune["criterion"]
    'l1'
"""

from __future__ import annotations

import copy
import numbers
import os
import re

import yaml

from kprune.config import granularity
from kprune.config import schema as S
from kprune.config.registry import CRITERIA, SCHEDULES, SEARCHES
from kprune.errors import RecipeError

F = S.Field


def _criterion_check(value):
    if value not in CRITERIA:
        return f"unknown criterion. Allowed: {CRITERIA.names()}."
    return None


def _schedule_check(value, path, lines):
    return SCHEDULES.validate(value, path, lines)


def _search_check(value, path, lines):
    if value is None:
        return None
    return SEARCHES.validate(value, path, lines, schema=lambda cls: cls.schema(), nullable=True)


def _granularity_check(value):
    return granularity.check(value)


def _temperature_check(value):
    if value <= 0:
        return "must be > 0 (a softmax temperature: 1 is the plain softmax, larger values soften it; 4 is usual)."
    return None


def _round_to_check(value, path, lines):
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise RecipeError(path, "must be `auto` (the nearest multiple of 8, at most 10 % below the target, in "
                          "groups of at least 16 channels: what XNNPACK's CPU kernels run fastest) or an "
                          "integer >= 1 (kept channel counts rounded up to a multiple of it; 1 keeps them "
                          "exact).", value, line=lines.get(path))
    return int(value)


def _block_shape_check(value):
    if value is not None and (len(value) != 2 or any(v < 1 for v in value)):
        return "must be two positive integers [rows, cols], e.g. [1, 4]."
    return None


OPTIMIZER = S.Section({
    "name": F("str", "sgd", choices=("sgd", "adam", "adamw", "rmsprop"), doc="optimizer"),
    "learning_rate": F("float", 0.01, low=0.0, doc="initial learning rate"),
    "momentum": F("float", 0.9, low=0.0, high=1.0, high_open=True, doc="SGD/RMSprop momentum"),
    "nesterov": F("bool", False),
}, doc="a Keras optimizer")

TRAIN = S.Section({
    "epochs": F("int", 0, low=0, doc="training epochs (0 = use the model as loaded)"),
    "steps_per_epoch": F("int", None, low=1, nullable=True, doc="cap on steps per epoch"),
    "optimizer": F("dict", {}, section=OPTIMIZER),
    "lr_schedule": F("str", "constant", choices=("constant", "cosine", "step")),
    "weight_decay": F("float", 0.0, low=0.0, doc="decoupled weight decay (the Keras optimizer's weight_decay)"),
}, doc="training settings")

DISTILL = S.Section({
    "alpha": F("float", 0.5, low=0.0, high=1.0,
               doc="weight of the labels' loss (Keras' student_loss_weight); 1 − alpha weighs the distillation "
                   "loss: 1 = no distillation, 0 = the teacher only"),
    "temperature": F("float", 4.0, check=_temperature_check,
                     doc="softmax temperature of teacher and student logits, > 0"),
}, doc="knowledge distillation from the dense model (kprune.models.distill)")

FINETUNE = S.Section({
    **TRAIN.fields,
    "distill": F("dict", None, section=DISTILL, nullable=True,
                 doc="fine-tune with the dense model before pruning as teacher: {alpha, temperature} "
                     "(null = off; {} = alpha 0.5, temperature 4)"),
}, doc="fine-tuning settings")

MODEL = S.Section({
    "name": F("str", "lenet300_100", doc="zoo name, keras.applications name, or a path ending in .keras"),
    "input_shape": F("list", None, item=F("int", low=1), nullable=True),
    "num_classes": F("int", None, low=2, nullable=True),
    "width": F("float", 1.0, low=0.0, doc="channel width multiplier for zoo models",
               check=lambda v: "must be > 0." if v <= 0 else None),
}, doc="the model to prune")

DATA = S.Section({
    "name": F("str", "fashion_mnist", doc="tfds dataset name"),
    "batch_size": F("int", 128, low=1),
    "augment": F("str", "none", choices=("none", "standard")),
    "take": F("int", None, low=1, nullable=True, doc="use only this many training examples"),
    "test_take": F("int", None, low=1, nullable=True, doc="use only this many test examples"),
    "data_dir": F("str", None, nullable=True),
}, doc="the dataset")

CONFIG_ENTRY = S.Section({
    "op_types": F("list", None, item=F("str"), nullable=True, doc="layer class names, e.g. [Conv2D, Dense]"),
    "op_names": F("list", None, item=F("str"), nullable=True, doc="exact layer names"),
    "op_names_re": F("list", None, item=F("str"), nullable=True, doc="regular expressions over layer names"),
    "exclude": F("bool", False, doc="remove the matched layers from pruning"),
    "sparsity": F("float", None, low=0.0, high=1.0, high_open=True, nullable=True,
                  doc="per-layer target sparsity in [0, 1)"),
    "total_sparsity": F("float", None, low=0.0, high=1.0, high_open=True, nullable=True,
                        doc="target sparsity over all matched layers together (global scope)"),
    "max_sparsity_per_layer": F("float", 0.99, low=0.0, high=1.0, doc="cap for global scope"),
    "criterion": F("str", None, nullable=True, check=None, doc="override the recipe criterion"),
    "granularity": F("str", None, nullable=True, check=_granularity_check,
                     doc="override the recipe granularity"),
}, doc="one NNI-style config_list entry")

PRUNE = S.Section({
    "criterion": F("str", "level", doc="importance criterion", check=_criterion_check),
    "granularity": F("str", "weight", check=_granularity_check, doc="what a pruned unit is"),
    "block_shape": F("list", [1, 4], item=F("int"), check=_block_shape_check,
                     doc="block granularity: [rows, cols] tile of the kernel's (inputs, outputs) view"),
    "soft": F("bool", False, doc="soft pruning (SFP): pruned weights keep training and may regrow"),
    "slim_lambda": F("float", 1e-4, low=0.0, doc="slim: weight λ of the λ·Σ|gamma| training penalty"),
    "scope": F("str", "layerwise", choices=("layerwise", "global")),
    "dependency_aware": F("bool", True, doc="prune coupled channels together (filter granularity)"),
    "aggregate": F("str", "sum", choices=("sum", "mean", "max"),
                   doc="how a channel group's score combines its members' scores"),
    "group_score": F("str", "auto", choices=("auto", "producers", "all"),
                     doc="filter/head: which weights score a channel group: `producers` (their filters, "
                         "NNI's way), `all` (every weight removing the channel deletes: producers' "
                         "filters, BatchNorm scales, consumers' input channels; Torch-Pruning's way) or "
                         "`auto` (`all` for criteria that read weights or gradients, `producers` for "
                         "those that read output activations or BatchNorm scales)"),
    "round_to": F("custom", "auto", check=_round_to_check,
                  doc="kept channel counts: `auto` (nearest multiple of 8, at most 10 % below the target, in "
                      "groups of >= 16 channels: XNNPACK's tile) or an integer r (rounded up to a multiple "
                      "of r; 1 = exact)"),
    "min_keep": F("int", 1, low=1, doc="never keep fewer channels than this in a group"),
    "schedule": F("custom", {"name": "oneshot"}, check=_schedule_check),
    "config_list": F("list", [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.5}], item=F("dict", section=CONFIG_ENTRY),
                     check=lambda v: None if v else "must not be empty: give at least one entry, e.g. "
                     "[{op_types: [Conv2D], sparsity: 0.5}] (or leave config_list out for that default)."),
    "statistics_batches": F("int", 10, low=1, doc="batches for activation/gradient criteria"),
    "seed": F("int", 0, doc="seed for random criteria"),
    "recalibrate_bn": F("int", 0, low=0, doc="re-estimate BatchNorm statistics on this many training "
                        "batches right after pruning (0 = off)"),
    "search": F("custom", None, check=_search_check),
}, doc="what to prune and how")

EXPORT = S.Section({
    "quantize": F("str", "none", choices=("none", "fp16", "dynamic", "int8")),
    "benchmark": F("dict", {}, section=S.Section({
        "threads": F("list", [1], item=F("int", low=1)),
        "runs": F("int", 50, low=1),
        "warmup": F("int", 5, low=0),
    })),
    "enabled": F("bool", True),
}, doc="TFLite export and latency benchmark")

ROOT = S.Section({
    "model": F("dict", {}, section=MODEL),
    "data": F("dict", {}, section=DATA),
    "train": F("dict", {}, section=TRAIN),
    "prune": F("dict", {}, section=PRUNE),
    "finetune": F("dict", {}, section=FINETUNE),
    "export": F("dict", {}, section=EXPORT),
    "seed": F("int", 0, doc="global seed"),
    "name": F("str", None, nullable=True, doc="experiment name"),
})


def group_score_of(plan: dict) -> str:
    """``prune.group_score`` of a recipe's prune section or a wrapper's plan (the schema's
    default where the key is absent)."""
    return plan.get("group_score", PRUNE.fields["group_score"].default)


def scores_whole_group(crit, group_score: str) -> bool:
    """Whether ``crit`` scores every weight of a channel group under ``group_score``: ``all``,
    or ``auto`` with a criterion that reads weights or gradients only (``crit.scores_group()``)."""
    return group_score in ("all", "auto") and crit.scores_group()


def check_group_score(crit, kind: str, group_score: str, lines: dict | None = None) -> None:
    """Raises :class:`RecipeError` when ``prune.group_score: all`` meets a criterion that
    scores what only a group's producers have (output activations, the BatchNorm after them)."""
    if group_score == "all" and kind in ("filter", "head") and not crit.scores_group():
        what = "output activations" if "activations" in crit.needs else "the scale of the BatchNorm after each layer"
        raise RecipeError("prune.group_score", f"`all` scores every weight of a channel group, producers' "
                          f"filters, BatchNorm scales and consumers' input channels alike; criterion "
                          f"`{crit.name}` scores {what}, which only the producers have. Use "
                          "group_score: producers (or auto, the default) with it, or a weight or gradient criterion "
                          "(l1, l2, fpgm, taylor_fo, ...).", group_score,
                          line=(lines or {}).get("prune.group_score"))


def _check_entries(prune: dict, lines: dict, explicit_scope=None):
    for i, entry in enumerate(prune["config_list"]):
        path = f"prune.config_list[{i}]"
        if not (entry["op_types"] or entry["op_names"] or entry["op_names_re"]):
            raise RecipeError(path, "selects nothing: give at least one of op_types, op_names, op_names_re.",
                              entry, line=lines.get(path))
        if entry["exclude"]:
            continue
        has_s, has_t = entry["sparsity"] is not None, entry["total_sparsity"] is not None
        if has_s == has_t:
            raise RecipeError(path, "needs exactly one of `sparsity` (per layer) or `total_sparsity` "
                              "(all matched layers together, global scope).", entry, line=lines.get(path))
        name = entry["criterion"] or prune["criterion"]
        crit = CRITERIA.lookup(name, f"{path}.criterion")() if name in CRITERIA else None
        scope = prune["scope"]
        if crit is not None and crit.scope is not None:
            if explicit_scope is not None and explicit_scope != crit.scope:
                raise RecipeError("prune.scope", f"criterion `{name}` is {crit.scope} by definition "
                                  f"({crit.paper}); remove `scope` or set scope: {crit.scope}.",
                                  explicit_scope, line=lines.get("prune.scope"))
            scope = crit.scope
        if crit is not None:
            kind = granularity.parse(entry["granularity"] or prune["granularity"])[0]
            if kind not in crit.granularities:
                p = f"{path}.granularity" if entry["granularity"] else "prune.granularity"
                raise RecipeError(p, f"criterion `{name}` supports granularities {list(crit.granularities)}.",
                                  entry["granularity"] or prune["granularity"], line=lines.get(p))
            check_group_score(crit, kind, group_score_of(prune), lines)
        if has_t and scope != "global":
            raise RecipeError(f"{path}.total_sparsity", "is only meaningful with `prune.scope: global`; "
                              "use `sparsity` for layerwise pruning or set scope: global.",
                              entry["total_sparsity"], line=lines.get(f"{path}.total_sparsity"))
        if entry["criterion"] is not None and entry["criterion"] not in CRITERIA:
            p = f"{path}.criterion"
            raise RecipeError(p, f"unknown criterion. Allowed: {CRITERIA.names()}.",
                              entry["criterion"], line=lines.get(p))
        for j, rx in enumerate(entry["op_names_re"] or []):
            try:
                re.compile(rx)
            except re.error as e:
                p = f"{path}.op_names_re[{j}]"
                raise RecipeError(p, f"is not a valid regular expression ({e}).", rx, line=lines.get(p)) from None


class Recipe:
    """A validated recipe with defaults filled.

    Build one with :meth:`from_yaml`, :meth:`from_dict` or :meth:`coerce`; read sections as
    attributes (``recipe.prune``, ``recipe.train``...), each a plain dict.
    """

    SECTIONS = tuple(ROOT.fields)

    def __init__(self, data: dict, source: str | None = None, lines: dict | None = None):
        self._lines = dict(lines or {})
        self.source = source
        check_size(data)
        _check_acyclic(data)
        self._data = S.validate_section(data if data is not None else {}, ROOT, "", self._lines)
        raw_prune = (data or {}).get("prune") if isinstance(data, dict) else None
        _check_entries(self._data["prune"], self._lines,
                       raw_prune.get("scope") if isinstance(raw_prune, dict) else None)
        self._raw = copy.deepcopy(data if data is not None else {})

    def __getattr__(self, name):
        if name.startswith("_") or name not in Recipe.SECTIONS:
            raise AttributeError(name)
        return self._data[name]

    def __repr__(self):
        return f"Recipe({self.source or 'dict'}: criterion={self.prune['criterion']}, " \
               f"granularity={self.prune['granularity']}, entries={len(self.prune['config_list'])})"

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        """Validates a dict (the same structure as the YAML)."""
        if not isinstance(data, dict):
            raise RecipeError("", "a recipe must be a mapping.", data)
        return cls(copy.deepcopy(data))

    @classmethod
    def from_yaml(cls, path_or_text: str, overrides=()) -> "Recipe":
        """Reads a YAML file path or a YAML string; applies ``key.path=value`` overrides.

        Args:
            path_or_text: a path to a ``.yaml``/``.yml`` file, or YAML text.
            overrides: iterable of ``"a.b.c=value"`` strings (values parsed as YAML).
        """
        data, lines, source = read_yaml(path_or_text, "recipe")
        data = apply_overrides(data, overrides)
        return cls(data, source=source, lines=lines)

    @classmethod
    def coerce(cls, value) -> "Recipe":
        """Accepts a Recipe, a dict, a YAML path or YAML text."""
        if isinstance(value, Recipe):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        if isinstance(value, (str, os.PathLike)):
            return cls.from_yaml(value)
        raise RecipeError("", "expected a kprune.Recipe, a dict, or a path to a YAML file.", value)

    def with_overrides(self, overrides) -> "Recipe":
        """Returns a new Recipe with ``key.path=value`` overrides applied to the raw input."""
        return Recipe(apply_overrides(copy.deepcopy(self._raw), overrides), source=self.source, lines=self._lines)

    def to_dict(self) -> dict:
        """The validated recipe (defaults filled) as plain data."""
        return copy.deepcopy(self._data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


#: Limits on what a recipe or sweep may be (a real one is a few KB and a few hundred values):
#: the file's size in bytes, and the number of values (mappings, lists and scalars) once YAML
#: aliases (``*name``) are expanded. They turn an "alias bomb" (1.2 KB of nested aliases that
#: expand to billions of values) into a RecipeError in milliseconds.
MAX_RECIPE_BYTES = 1_000_000
MAX_RECIPE_VALUES = 100_000


def check_size(data, what: str = "recipe"):
    """Raises RecipeError when ``data`` holds more than :data:`MAX_RECIPE_VALUES` values with
    shared (aliased) parts counted each time they are used; costs one visit per distinct value."""
    memo = {}

    def size(value):
        if not isinstance(value, (dict, list)):
            return 1
        if id(value) in memo:
            return memo[id(value)]
        memo[id(value)] = 1  # in progress: a cycle is counted once (and refused by _check_acyclic)
        total = 1
        for item in (value.values() if isinstance(value, dict) else value):
            total += size(item)
            if total > MAX_RECIPE_VALUES:
                raise RecipeError("", f"this {what} expands to more than {MAX_RECIPE_VALUES:,} values (YAML "
                                  "aliases `*name` are expanded each time they are used; nested aliases "
                                  "multiply). Write the values out, or split the file.")
        memo[id(value)] = total
        return total

    try:
        size(data)
    except RecursionError:
        raise RecipeError("", f"this {what} is nested too deeply to be a {what}.") from None


def _check_acyclic(value, path: str = "", seen: tuple = ()):
    """Refuses self-referencing structures (a YAML anchor used inside itself: ``a: &x [*x]``)."""
    if isinstance(value, (dict, list)):
        if any(value is s for s in seen):
            raise RecipeError(path, "refers to itself (a YAML alias used inside its own anchor); a recipe "
                              "must be a finite tree of mappings, lists and scalars.")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            sub = f"{path}[{k}]" if isinstance(value, list) else (f"{path}.{k}" if path else str(k))
            _check_acyclic(v, sub, seen + (value,))


def read_yaml(path_or_text, what: str = "recipe"):
    """Reads a YAML file path or YAML text with ``safe_load``; returns ``(data, lines, source)``.

    ``data`` is the top-level mapping (``{}`` for an empty document), ``lines`` maps dotted key
    paths to 1-based line numbers, ``source`` is the file path (None for text). Errors are
    :class:`RecipeError` naming ``what`` and the line.
    """
    source, text = None, path_or_text
    if isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and "\n" not in path_or_text
            and (path_or_text.endswith((".yaml", ".yml")) or os.path.exists(path_or_text))):
        source = os.fspath(path_or_text)
        if not os.path.exists(source):
            raise RecipeError("", f"{what} file not found: {source}.")
        if os.path.getsize(source) > MAX_RECIPE_BYTES:
            raise RecipeError("", f"{what} file {source} is {os.path.getsize(source):,} bytes; the limit is "
                              f"{MAX_RECIPE_BYTES:,} (kprune.config.recipe.MAX_RECIPE_BYTES).")
        with open(source, encoding="utf-8") as f:
            text = f.read()
    if isinstance(text, str) and len(text.encode("utf-8", "replace")) > MAX_RECIPE_BYTES:
        raise RecipeError("", f"this {what} text is {len(text.encode('utf-8', 'replace')):,} bytes; the limit is "
                          f"{MAX_RECIPE_BYTES:,} (kprune.config.recipe.MAX_RECIPE_BYTES).")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except RecursionError:
        raise RecipeError("", f"this {what} is nested too deeply to be a {what}.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RecipeError("", f"malformed YAML{' in ' + source if source else ''}: "
                          f"{getattr(e, 'problem', None) or e}.", line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError("", f"a {what} must be a YAML mapping at the top level.", data, line=1)
    check_size(data, what)  # before anything walks the tree with aliases expanded
    return data, (_line_map(node) if node is not None else {}), source


_KEY_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _split_path(path: str):
    parts = []
    for m in _KEY_RE.finditer(path):
        if m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            parts.extend(int(p) if p.isdigit() else p for p in [m.group(1)])
    return parts


def apply_overrides(data: dict, overrides) -> dict:
    """Applies ``a.b.c=value`` (or ``a.list[0].b=value``) strings to a raw recipe dict.

    Values are parsed as YAML (``0.5`` is a number, ``[1, 2]`` a list, ``null`` None).
    Missing intermediate mappings are created; unknown keys are caught by validation.
    """
    data = copy.deepcopy(data)
    for item in overrides or ():
        if "=" not in item:
            raise RecipeError(item, "an override must look like key.path=value.", item)
        path, raw = item.split("=", 1)
        path = path.strip()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        parts = _split_path(path)
        if not parts:
            raise RecipeError(path, "empty key path in override.", item)
        cur = data
        for i, key in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(key, int):
                if not isinstance(cur, list) or key >= len(cur):
                    raise RecipeError(path, f"index {key} does not exist in the list.", item)
                cur = cur[key]
            else:
                if not isinstance(cur, dict):
                    raise RecipeError(path, f"`{key}` is inside a value that is not a mapping.", item)
                if cur.get(key) is None:
                    cur[key] = [] if isinstance(nxt, int) else {}
                cur = cur[key]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(cur, list) or last > len(cur):
                raise RecipeError(path, f"index {last} does not exist in the list.", item)
            if last == len(cur):
                cur.append(value)
            else:
                cur[last] = value
        else:
            if not isinstance(cur, dict):
                raise RecipeError(path, "the parent of this key is not a mapping.", item)
            cur[last] = value
    return data


def _line_map(node, path: str = "", out: dict | None = None, stack: tuple = ()) -> dict:
    """Maps dotted key paths of a composed YAML node tree to 1-based line numbers."""
    out = {} if out is None else out
    if any(node is n for n in stack):  # an alias inside its own anchor: refused by validation
        return out
    stack = stack + (node,)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = f"{path}.{k.value}" if path else str(k.value)
            out[sub] = k.start_mark.line + 1
            _line_map(v, sub, out, stack)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            sub = f"{path}[{i}]"
            out[sub] = v.start_mark.line + 1
            _line_map(v, sub, out, stack)
    return out
