"""``kprune-cli``: a thin shell over the library (parse → call → print)."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from kprune.cli import quiet as quiet_tf

EPILOG = """\b
Examples:
  kprune-cli prune recipes/quickstart.yaml --out runs/quickstart
  kprune-cli prune recipes/resnet18.yaml --set prune.config_list[0].sparsity=0.7 --out runs/r18-70
  kprune-cli prune recipes/quickstart.yaml --out runs/quickstart --resume
  kprune-cli count runs/quickstart/model.keras
  kprune-cli inspect resnet20 --input-shape 32,32,3
"""


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted(self.commands)


BACKENDS = ("jax", "tensorflow", "torch")  # Keras backends; each needs the package of its name


def _set_backend(ctx, param, value):
    """``--backend`` (or ``KERAS_BACKEND``): set before Keras is imported, checked for its package."""
    if value is None:
        return None
    import importlib.util

    if importlib.util.find_spec(value) is None:
        raise click.BadParameter(f"the Keras backend `{value}` needs the `{value}` package, which is "
                                 f"not installed (pip install -e \".[{value}]\" or pip install {value}).",
                                 ctx=ctx, param=param)
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != value:
        raise click.BadParameter(f"Keras is already imported with the `{keras.backend.backend()}` backend in this "
                                 f"process; `{value}` must be chosen before it is.", ctx=ctx, param=param)
    os.environ["KERAS_BACKEND"] = value
    return value


@click.group(cls=_Group, epilog=EPILOG)
@click.version_option(package_name="kprune")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--backend", type=click.Choice(BACKENDS), envvar="KERAS_BACKEND", callback=_set_backend,
              expose_value=False, is_eager=True,
              help="Keras backend (default: $KERAS_BACKEND, else tensorflow). TFLite export, tf.data input "
                   "and the benchmarks still need TensorFlow installed; see docs/backends.md.")
def cli(verbose):
    """kprune: prune Keras models, make them smaller and faster, and measure it."""
    quiet_tf.configure(verbose)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


def _fail(e):
    raise click.ClickException(str(e)) from e


@cli.command(epilog=EPILOG)
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: runs/<recipe name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a recipe value, e.g. --set train.epochs=3 (repeatable; values are YAML).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its checkpoints.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
def prune(recipe, out_dir, overrides, resume, quiet):
    """Run a recipe: train or load → prune → fine-tune → compact → count → export → benchmark.

    Writes result.json (NNI's schema + latency, size, sparsity), model.keras, model.tflite,
    log.jsonl and checkpoints into --out.
    """
    quiet_tf.import_tensorflow()
    from kprune.runner import pipeline
    from kprune.errors import KPruneError
    from kprune.config.recipe import Recipe

    try:
        r = Recipe.from_yaml(recipe, overrides=overrides)
        out_dir = out_dir or os.path.join("runs", os.path.splitext(os.path.basename(recipe))[0])
        result = pipeline.run(r, out_dir, resume=resume, verbose=0 if quiet else 1)
    except KPruneError as e:
        _fail(e)
    click.echo(format_result(result))
    click.echo(f"\nwrote {os.path.join(out_dir, 'result.json')}")


def format_result(result: dict) -> str:
    """The deployment report: dense vs pruned, with every ratio as dense / pruned.

    A ratio above 1 means the pruned model is smaller or faster by that factor (the same
    direction as ``latency_ms.<threads>.ratio`` in result.json); accuracy rows show the change
    in points instead.
    """
    rows = [("test accuracy (Keras)", result["performance"]["original"], result["performance"]["finetuned"])]
    exp = result.get("export") or {}
    if "tflite_accuracy" in exp:
        rows.append(("test accuracy (TFLite)", exp["tflite_accuracy"]["original"], exp["tflite_accuracy"]["speedup"]))
    rows += [("params", result["params"]["original"], result["params"]["speedup"]),
             ("params (nonzero)", result["params"]["original"], result["params"]["nonzero"]),
             ("MACs", result["macs"]["original"], result["macs"]["speedup"]),
             ("MACs (effective)", result["macs"]["original"], result["macs"]["effective"]),
             ("FLOPs (= 2 x MACs)", result["flops"]["original"], result["flops"]["speedup"])]
    if "tflite_bytes" in exp:
        rows.append(("TFLite file bytes", exp["tflite_bytes"]["original"], exp["tflite_bytes"]["speedup"]))
    for t, lat in (exp.get("latency_ms") or {}).items():
        rows.append((f"latency ms, {t} thread(s), median", lat["original"], lat["speedup"]))
    lines = [f"{'':38s} {'dense':>14s} {'pruned':>14s} {'dense/pruned':>13s}"]
    for name, a, b in rows:
        if name.startswith("test accuracy"):
            ratio = f"{100 * (b - a):+9.2f} pts" if a is not None and b is not None else " " * 13
        else:
            ratio = f"{a / b:12.3f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else " " * 13
        fa = f"{a:14.4f}" if isinstance(a, float) else f"{a:14,}" if a is not None else f"{'-':>14s}"
        fb = f"{b:14.4f}" if isinstance(b, float) else f"{b:14,}" if b is not None else f"{'-':>14s}"
        lines.append(f"{name:38s} {fa} {fb} {ratio}")
    if result["performance"].get("pruned") is not None:
        lines.append(f"{'accuracy right after pruning':38s} {result['performance']['pruned']:29.4f}")
    lines.append("dense/pruned > 1: the pruned model is that many times smaller or faster "
                 "(result.json: latency_ms.<threads>.ratio, same direction)")
    if "error" in exp:
        lines.append(f"export failed: {exp['error']}")
    return "\n".join(lines)


def _load_model(spec, input_shape, num_classes):
    from kprune import models
    from kprune.errors import KPruneError
    if spec.endswith(".keras"):
        return models.get(spec)
    shape = input_shape or (32, 32, 3)
    try:
        return models.get(spec, input_shape=shape, num_classes=num_classes)
    except KPruneError:
        raise
    except (ValueError, TypeError) as e:  # the builder refused the shape (e.g. too small for its strides)
        raise click.BadParameter(f"`{spec}` cannot be built for input shape {','.join(map(str, shape))}: {e}",
                                 param_hint="'--input-shape'") from None


def _parse_input_shape(ctx, param, value):
    """``H,W,C`` -> a tuple of three positive ints (None stays None); else a usage error."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"must be H,W,C: three positive integers separated by commas, e.g. 32,32,3. "
                                 f"Received: {value!r}.")
    return tuple(int(p) for p in parts)


_MODEL_OPTS = [
    click.argument("model"),
    click.option("--input-shape", default=None, callback=_parse_input_shape,
                 help="For zoo/applications names: H,W,C (default 32,32,3)."),
    click.option("--num-classes", default=10, show_default=True, type=int),
]


def _model_options(f):
    for opt in reversed(_MODEL_OPTS):
        f = opt(f)
    return f


@cli.command(epilog=EPILOG)
@_model_options
@click.option("--per-layer", is_flag=True, help="Print one row per layer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def count(model, input_shape, num_classes, per_layer, as_json):
    """Count params, MACs and FLOPs (= 2 x MACs) of MODEL (.keras file or zoo/applications name)."""
    quiet_tf.import_tensorflow()
    from kprune import counting
    from kprune.errors import KPruneError
    try:
        c = counting.count(_load_model(model, input_shape, num_classes))
    except KPruneError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(c.to_dict(), indent=2, default=str))
        return
    if per_layer:
        click.echo(f"{'layer':40s} {'type':22s} {'params':>12s} {'MACs':>15s}")
        for row in c.per_layer:
            click.echo(f"{row.name:40s} {row.class_name:22s} {row.params:12,} {row.macs:15,}")
    click.echo(f"params {c.params:,}  nonzero {c.nonzero_params:,}  MACs {c.macs:,}  FLOPs {c.flops:,}  "
               f"effective MACs {c.effective_macs:,}")


@cli.command(epilog=EPILOG)
@_model_options
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False),
              help="Also show which layers this recipe selects and which of them would not be pruned, and why.")
def inspect(model, input_shape, num_classes, recipe_path):
    """Show MODEL's prunable layers (shape, MACs) and its channel groups."""
    quiet_tf.import_tensorflow()
    from kprune import counting
    from kprune import graph
    from kprune.errors import KPruneError
    from kprune.wrappers.selectors import layer_type
    from kprune.graph.layers import is_prunable
    try:
        m = _load_model(model, input_shape, num_classes)
        c = counting.count(m)
        gs = graph.groups(m)
    except KPruneError as e:
        _fail(e)
    macs = {}
    for row in c.per_layer:
        macs[row.name] = macs.get(row.name, 0) + row.macs
    click.echo(f"model {m.name}: params {c.params:,}, MACs {c.macs:,}\n")
    click.echo("prunable layers:")
    click.echo(f"  {'layer':40s} {'type':18s} {'kernel shape':22s} {'MACs':>14s}")
    from kprune.wrappers.selectors import flatten_layers
    for layer in flatten_layers(m):
        if is_prunable(layer):
            k = getattr(getattr(layer, "layer", layer), "kernel", None)
            shape = str(tuple(k.shape)) if k is not None else "-"
            click.echo(f"  {layer.name:40s} {layer_type(layer):18s} {shape:22s} {macs.get(layer.name, 0):14,}")
    click.echo(f"\nchannel groups: {len(gs)} ({sum(g.prunable for g in gs)} prunable)")
    for g in gs:
        prods = g.labels("producer")
        others = sorted({name for name in g.labels() if name not in prods})
        status = "prunable" if g.prunable else f"not prunable: {g.reason}"
        unit = "heads" if g.unit == "head" else "ch"
        click.echo(f"  #{g.id:<3d} {g.size:5d} {unit:5s} producers={prods}  coupled={others[:6]}"
                   f"{' ...' if len(others) > 6 else ''}  [{status}]")
    if recipe_path:
        from kprune.config.recipe import Recipe
        from kprune.pruning.pruner import check_selection
        try:
            found = check_selection(m, Recipe.from_yaml(recipe_path))
        except KPruneError as e:
            _fail(e)
        click.echo(f"\nrecipe {recipe_path}: {len(found['selected'])} layer(s) selected, "
                   f"{len(found['skipped'])} would not be pruned")
        for name in found["selected"]:
            why = found["skipped"].get(name)
            click.echo(f"  {name:40s} {'pruned' if why is None else 'NOT pruned: ' + why}")


from kprune.cli.bench import bench  # noqa: E402
from kprune.cli.export_cmd import export  # noqa: E402

cli.add_command(export)
cli.add_command(bench)
from kprune.cli.compare import compare  # noqa: E402
cli.add_command(compare)
from kprune.cli.plot import plot  # noqa: E402
cli.add_command(plot)


def main(argv=None):
    """Console entry point."""
    try:
        cli.main(args=argv, prog_name="kprune-cli", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted; rerun with --resume to continue", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
