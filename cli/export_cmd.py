"""``kprune-cli export``: write a saved Keras model as TFLite or ONNX (thin shell over kprune.export)."""

from __future__ import annotations

import json
import os

import click

EXAMPLES = """\b
Examples:
  kprune-cli export runs/quickstart/model.keras --out model.tflite
  kprune-cli export model.keras --quantize int8 --data fashion_mnist --out model_int8.tflite
  kprune-cli export model.keras --quantize int8 --io-dtype uint8 --data fashion_mnist --evaluate
  kprune-cli export model.keras --format litert --out model_keras.tflite
  kprune-cli export model.keras --format onnx          # needs: pip install kprune[onnx]
"""

#: kprune converter options that only ``--format tflite`` takes, with their defaults.
TFLITE_ONLY = {"quantize": ("--quantize", "none"), "io_dtype": ("--io-dtype", "float32"),
               "sparsity": ("--sparsity", False), "samples": ("--samples", None)}


def _check_format(ctx, fmt, values, evaluate):
    """Usage errors for options the chosen --format cannot honour."""
    from click.core import ParameterSource

    if fmt == "tflite":
        return
    for key, (flag, default) in TFLITE_ONLY.items():
        explicit = ctx.get_parameter_source(key) not in (ParameterSource.DEFAULT, None)
        if (default is None and explicit) or (default is not None and values[key] != default):
            shown = flag if isinstance(default, bool) else f"{flag} {values[key]}"
            raise click.UsageError(f"{shown} is an option of kprune's TFLite converter and works only with "
                                   f"--format tflite. Received: --format {fmt}. Allowed formats for {flag}: tflite.")
    if evaluate and fmt == "onnx":
        raise click.UsageError("--evaluate runs the file in LiteRT and works only with --format tflite or litert. "
                               "Received: --format onnx.")



def _load_keras(path):
    import keras

    import kprune  # noqa: F401  (registers kprune's serializable wrappers)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as err:  # keras raises ValueError/TypeError/OSError for bad files
        raise click.ClickException(f"Could not load Keras model {path!r}: {err}") from err


def _keras_accuracy(model, dataset) -> float:
    import numpy as np

    correct = total = 0
    for x, y in dataset.as_numpy_iterator():
        predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
        correct += int(np.sum(predicted == y.reshape(-1)))
        total += len(y)
    return correct / total if total else float("nan")


@click.command("export", epilog=EXAMPLES)
@click.argument("model_path", metavar="MODEL.keras", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["tflite", "litert", "onnx"]), default="tflite", show_default=True,
              help="tflite = kprune's converter (the quantization options); litert = Keras' Model.export(format='litert'); "
                   "onnx = Keras' Model.export(format='onnx') (pip install kprune[onnx]).")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Output path (default: MODEL with a .tflite suffix, plus _<quantize> when quantized; "
                   "MODEL_litert.tflite for litert; MODEL.onnx for onnx).")
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8"]), default="none", show_default=True,
              help="none = float32; fp16 = float16 weights; dynamic = int8 weights; int8 = full integer (needs --data).")
@click.option("--io-dtype", type=click.Choice(["float32", "int8", "uint8"]), default="float32", show_default=True,
              help="Input/output dtype; integer types need --quantize int8.")
@click.option("--sparsity", is_flag=True, help="Store pruned weights in TFLite's sparse format.")
@click.option("--data", "data_name", default=None,
              help="Dataset name for int8 calibration and --evaluate (e.g. fashion_mnist, cifar10).")
@click.option("--samples", default=100, show_default=True, type=click.IntRange(min=1),
              help="Calibration samples taken from the train split.")
@click.option("--evaluate", is_flag=True, help="Also print Keras and TFLite accuracy on the --data test split.")
@click.option("--eval-samples", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Test examples used by --evaluate.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def export(ctx, model_path, fmt, out, quantize, io_dtype, sparsity, data_name, samples, evaluate, eval_samples, as_json):
    """Write MODEL.keras (wrapped, stripped or compacted) as a .tflite or .onnx file."""
    _check_format(ctx, fmt, {"quantize": quantize, "io_dtype": io_dtype, "sparsity": sparsity, "samples": samples},
                  evaluate)
    from kprune.cli import quiet
    quiet.import_tensorflow()
    from kprune.errors import KPruneError
    from kprune.export.evaluate import evaluate_tflite
    from kprune.export.formats import export as export_model

    if quantize == "int8" and not data_name:
        raise click.UsageError("--quantize int8 needs calibration data: pass --data NAME (e.g. --data fashion_mnist).")
    if evaluate and not data_name:
        raise click.UsageError("--evaluate needs --data NAME for the test split.")
    if out is None:
        stem = os.path.splitext(model_path)[0]
        out = stem + {"tflite": "" if quantize == "none" else f"_{quantize}", "litert": "_litert", "onnx": ""}[fmt]
        out += ".onnx" if fmt == "onnx" else ".tflite"
    try:
        model = _load_keras(model_path)
        representative = None
        if quantize == "int8":
            from kprune.data import load

            representative = load(data_name, split="train", take=samples, batch_size=min(samples, 32), shuffle=False)
        if fmt == "tflite":
            result = export_model(model, out, quantize=quantize, representative_data=representative, io_dtype=io_dtype,
                                  sparsity=sparsity)
        else:
            result = export_model(model, out, format=fmt)
        summary = result.to_dict()
        if evaluate:
            from kprune.data import load
            from kprune.export.tflite import strip_wrappers

            test = load(data_name, split="test", take=eval_samples, batch_size=128, shuffle=False)
            summary["keras_accuracy"] = _keras_accuracy(strip_wrappers(model), test)
            summary["tflite_accuracy"] = evaluate_tflite(result.path, test)
            summary["eval_samples"] = eval_samples
    except KPruneError as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"wrote {summary['path']}")
    rows = [("bytes", f"{summary['bytes']:,}"), ("format", fmt)]
    if fmt == "tflite":
        rows += [("quantize", quantize), ("io dtype", io_dtype), ("sparse storage", str(sparsity))]
    if evaluate:
        rows += [(f"Keras accuracy ({eval_samples} test)", f"{summary['keras_accuracy']:.4f}"),
                 (f"TFLite accuracy ({eval_samples} test)", f"{summary['tflite_accuracy']:.4f}")]
    for name, value in rows:
        click.echo(f"  {name:32s} {value}")

