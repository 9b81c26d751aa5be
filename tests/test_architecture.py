"""The package's layering: each subpackage imports only itself and the layers below it.

Every ``import`` of a kprune module is checked, at module level and inside functions alike, so
no import loop can hide in a function body. The layers (lowest first) are documented in
``docs/architecture.md``; plug-in families are found by name through their registries
(:mod:`kprune.config.registry`), which is how the recipe reaches criteria, schedules and
searches without importing them.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: lowest first; a subpackage may import itself and any subpackage of a lower layer.
LAYERS = [
    ("errors", "io"),
    ("config",),
    ("criteria", "schedules", "models", "data"),
    ("graph",),
    ("counting",),
    ("wrappers",),
    ("export",),
    ("pruning",),
    ("callbacks",),
    ("search",),
    ("runner",),
    ("cli",),
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
#: where each subpackage's source lives (cli/ and export/ are installed inside kprune)
DIRS = {"cli": ROOT / "cli", "export": ROOT / "export"}


def _sources():
    for path in sorted((ROOT / "kprune").rglob("*.py")):
        rel = path.relative_to(ROOT / "kprune")
        yield ("kprune",) + rel.with_suffix("").parts, path
    for name, folder in DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            yield ("kprune", name) + rel.with_suffix("").parts, path


def _imports(path, parts):
    """(line, imported kprune module path) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kprune":
                    yield node.lineno, tuple(alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = base + tuple((node.module or "").split(".")) if node.module else base
            else:
                mod = tuple((node.module or "").split("."))
            if mod[:1] != ("kprune",):
                continue
            for alias in node.names:  # `from pkg import name`: name may be a module of pkg
                yield node.lineno, mod + (alias.name,)


def _layer(mod):
    return mod[1] if len(mod) > 1 else None


def test_every_subpackage_has_a_layer():
    top = {p.name for p in (ROOT / "kprune").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    loose = {p.stem for p in (ROOT / "kprune").glob("*.py")} - {"__init__"}
    assert loose == {"errors", "io"}, f"loose modules in kprune/: {sorted(loose - {'errors', 'io'})}"
    assert top | set(DIRS) <= set(LEVEL), f"subpackages without a layer: {sorted(top | set(DIRS) - set(LEVEL))}"


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for parts, path in _sources():
        own = parts[1]
        if own == "__init__":  # the kprune facade re-exports the public API
            continue
        for line, mod in _imports(path, parts):
            target = _layer(mod)
            if target is None or target == own:
                continue
            if target not in LEVEL:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports unknown kprune.{target}")
            elif LEVEL[target] >= LEVEL[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports kprune.{'.'.join(mod[1:])}")
    assert not wrong, "imports against the layering (docs/architecture.md):\n" + "\n".join(wrong)


def test_no_import_loop_inside_a_subpackage():
    graph = {}
    for parts, path in _sources():
        graph[".".join(parts)] = {".".join(t) for _, t in _imports(path, parts) if _layer(t) == parts[1]}

    def resolve(t):
        while t:
            for cand in (t, t + ".__init__"):
                if cand in graph:
                    return cand
            t = t.rpartition(".")[0]
        return None

    edges = {m: {resolve(t) for t in ts} - {m, None} for m, ts in graph.items()}
    state, loops = {}, []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                loops.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not loops, "import loops:\n" + "\n".join(loops)


@pytest.mark.parametrize("family", ["criteria", "schedules", "search"])
def test_registries_load_their_family_by_name(family):
    import importlib

    from kprune.config import registry

    reg = {"criteria": registry.CRITERIA, "schedules": registry.SCHEDULES, "search": registry.SEARCHES}[family]
    names = reg.names()
    assert names, f"{family}: no members registered"
    importlib.import_module(f"kprune.{family}")
    assert reg.names() == names


FIRST_IMPORTS = {  # first statements that once hit the registration loop or left registration pending
    "from kprune.wrappers import PruneWrapper": "import loop",
    "import kprune.wrappers.prune_wrapper": "import loop",
    "import kprune.pruning.updaters": "import loop",
    "import kprune.pruning.rewind": "import loop",
    "import kprune; from kprune import criteria": "pending until some later import",
    "import keras; import kprune": "keras first",
}


@pytest.mark.parametrize("statement", sorted(FIRST_IMPORTS))
def test_a_submodule_imported_first_loads_and_registers_with_keras(statement):
    """``from kprune.wrappers import PruneWrapper`` before anything else: Keras is imported by a
    kprune module mid-import, so kprune's Keras registration waits for the outermost kprune
    import to finish (it would otherwise need the half-executed module) — and is done when that
    statement returns, so ``keras.saving.load_model`` of a wrapped model works on the next line."""
    import subprocess
    import sys
    code = f"""
import sys
{statement}
missing = [m for m in ("kprune.wrappers", "kprune.pruning.pruner", "kprune.callbacks") if m not in sys.modules]
assert not missing, missing
import keras
assert keras.saving.get_registered_object("kprune>PruningCallback") is not None
assert not [f for f in sys.meta_path if type(f).__module__ == "kprune"], sys.meta_path
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=str(ROOT))
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
