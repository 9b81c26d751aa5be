"""Automatic per-layer sparsity search under a params, FLOPs or latency budget.

Searches choose how much to prune each *unit* (a channel group, or a layer for weight
granularity) so that the pruned model's measured cost is at or under a budget while an
evaluator's score stays high. Each is registered by name and configured by a recipe's
``prune.search`` mapping or by keyword arguments:
    result = kprune.search.run(model, recipe, evaluator=accuracy, out_dir="runs/sa",
                               name="simulated_annealing", constraint="flops", budget=0.5)
    result.allocation, result.cost, result.score, result.model   # see SearchResult

See ``docs/search.md``. Algorithms: ``sensitivity``, ``simulated_annealing``, ``netadapt``, ``admm``, ``autocompress``, ``amc``, and the
``uniform`` baseline (one sparsity for every unit, sized to the budget).
"""

from kprune.config.registry import SEARCHES as _REGISTRY
from kprune.search.base import (  # noqa: F401
    Search,
    register,  # noqa: E402
    tighten,
)
from kprune.search.result import SearchResult  # noqa: F401

names = _REGISTRY.names

from kprune.search import (  # noqa: E402,F401  (registration)
    admm,
    amc,
    autocompress,
    netadapt,
    sensitivity,
    simulated_annealing,
    uniform,
)


def validate(value, path="prune.search", lines=None):
    """Validates a ``prune.search`` mapping (name, common and algorithm keys) and fills defaults.

    Raises:
        RecipeError: naming the key path, for unknown names, unknown keys, wrong types or
            impossible values.
    """
    return _REGISTRY.validate(value, path, lines, schema=lambda cls: cls.schema(), nullable=True)


def get(identifier, path: str = "prune.search") -> Search:
    """Resolves a search from a name, a config dict or an instance.

    Example:
        >>> get({"name": "sensitivity", "constraint": "params", "budget": 0.3}).get_config()["budget"]
        0.3
    """
    if isinstance(identifier, Search):
        return identifier
    config = validate(identifier, path)
    cls = _REGISTRY.lookup(config["name"], f"{path}.name")
    return cls.from_config(config)


def run(model, recipe, evaluator=None, constraint=None, budget=None, out_dir=None, resume=False, seed=None,
        finetune=None, verbose=1, executor=None, **options) -> SearchResult:
    """Runs the search configured by ``recipe``'s ``prune.search``, overridden by keywords.

    Args:
        model: the trained dense Keras model.
        recipe: a Recipe, recipe dict, YAML path or bare ``prune`` section dict.
        evaluator: ``callable(model) -> float`` (default: validation accuracy from ``recipe.data``).
        constraint: ``"params"``, ``"flops"`` or ``"latency"`` (default from the recipe, else flops).
        budget: fraction of the original (<= 1) or absolute value (> 1).
        out_dir: where checkpoints and results go (default None).
        resume: continue from ``out_dir``'s checkpoint (default False).
        seed: the search seed (default the recipe's, else ``prune.seed``).
        finetune: ``callable(model, steps, seed)`` for algorithms with ``finetune_steps``.
        verbose: 0 hides the progress bar.
        executor: an :class:`~kprune.search.executor.Executor` (default: ``prune.search.executor``,
            e.g. ``executor={"name": "local", "workers": 4}`` as an option).
        **options: ``name`` and any algorithm key (e.g. ``start_temperature=50``).

    Returns:
        SearchResult.
    """

    recipe = coerce_recipe(recipe)
    config = dict(recipe.prune.get("search") or {})
    config.update(options)
    for key, value in (("constraint", constraint), ("budget", budget), ("seed", seed)):
        if value is not None:
            config[key] = value
    if "name" not in config:
        raise RecipeError("prune.search.name", f"no search algorithm given: set prune.search.name in the "
                          f"recipe or pass name=... (one of {names()}).")
    return get(config).run(model, recipe, evaluator=evaluator, out_dir=out_dir, resume=resume,
                           finetune=finetune, verbose=verbose, executor=executor)


from kprune.errors import RecipeError
from kprune.search.base import coerce_recipe
from kprune.search.executor import Executor, LocalExecutor, RayExecutor  # noqa: E402

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "Search", "SearchResult", "get", "names", "register", "run",
           "tighten", "validate"]
