"""Automatic per-layer sparsity search (sensitivity, NetAdapt, SA, ADMM, AutoCompress, AMC)."""

from kprune.registry import Registry

_REGISTRY = Registry("search")
register = _REGISTRY.register
names = _REGISTRY.names


def validate(value, path="prune.search", lines=None):
    """Validates a ``prune.search`` mapping against the registered searches."""
    from kprune.errors import RecipeError
    lines = lines or {}
    if not isinstance(value, dict) or "name" not in value:
        raise RecipeError(path, f"must be null or a mapping with a `name` (one of {names()}).", value,
                          line=lines.get(path))
    _REGISTRY.lookup(value["name"], f"{path}.name")
    return value
