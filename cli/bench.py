"""``kprune-cli bench``: latency of .tflite files on this machine or an Android device."""

from __future__ import annotations

import json

import click

EXAMPLES = """\b
Examples:
  kprune-cli bench model.tflite --threads 1,2,4 --runs 200
  kprune-cli bench dense.tflite --compare pruned.tflite --threads 1,2 --json bench.json
  kprune-cli bench model.tflite --runtime compiled_model     # LiteRT's CompiledModel API
  kprune-cli bench model.tflite --android --serial R58M123 --binary /data/local/tmp/benchmark_model
"""


def _threads(ctx, param, value):
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise click.BadParameter(f"expected positive integers separated by commas, e.g. 1,2,4. Received: {value!r}")
    return counts


def _ms(value) -> str:
    return f"{value:9.3f}" if value is not None else f"{'-':>9s}"


LABEL_WIDTH = 40


def labels(paths, width: int = LABEL_WIDTH) -> list:
    """Row labels for these paths: file names when they are unique, else the paths; a label longer
    than ``width`` keeps its end and starts with ``...`` so that a cut is visible."""
    import os

    names = [os.path.basename(p) for p in paths]
    chosen = names if len(set(names)) == len(set(paths)) else [str(p) for p in paths]
    return [c if len(c) <= width else "..." + c[-(width - 3):] for c in chosen]


def format_reports(rows, memory: bool = True) -> str:
    """A table of ``(label, LatencyReport)`` rows: latency statistics, sizes and (with ``memory``) memory."""
    width = max([5] + [len(label) for label, _ in rows])
    header = (f"{'model':{width}s} {'thr':>3s} {'median':>9s} {'mean':>9s} {'p90':>9s} {'p99':>9s} {'min':>9s} "
              f"{'std':>9s} {'bytes':>11s} {'gzip':>11s}" + (f" {'mem MB':>7s}" if memory else ""))
    lines = [header, "-" * len(header)]
    for label, r in rows:
        mem = f"{r.peak_memory_mb:7.1f}" if r.peak_memory_mb is not None else f"{'-':>7s}"
        lines.append(
            f"{label:{width}s} {r.threads:3d} {_ms(r.median_ms)} {_ms(r.mean_ms)} {_ms(r.p90_ms)} {_ms(r.p99_ms)} "
            f"{_ms(r.min_ms)} {_ms(r.std_ms)} {r.size_bytes:11,} {r.gzip_bytes:11,}" + (f" {mem}" if memory else "")
        )
    first = rows[0][1]
    where = first.machine.get("model") or first.machine.get("processor") or ""
    api = f" ({first.runtime})" if first.runtime else ""
    lines.append(
        f"times in ms; {first.runs} runs after {first.warmup} warm-up, backend {first.backend}{api} {where}, "
        f"xnnpack={'on' if first.xnnpack else 'off'}"
    )
    for note in dict.fromkeys(n for _, r in rows for n in r.notes):
        lines.append(f"note: {note}")
    return "\n".join(lines)


MEMORY_DROPPED = ("no mem MB column with --compare on this machine: both files run in one process, so the "
                  "first one loaded also carries the runtime's one-time set-up and the column would depend on "
                  "the order; run `kprune-cli bench FILE` on each file alone for its memory.")


def slower_notes(model: str, other: str, ratios) -> list:
    """A note for each thread count at which the second file is slower than the first (speedup < 1)."""
    notes = []
    for t, speedup in ratios:
        if speedup is not None and speedup < 1:
            notes.append(f"note: {other} is {1 / speedup:.2f}x SLOWER than {model} with {t} thread(s) (median). "
                         "Fewer parameters or int8 weights do not always mean less time on every CPU (kernels, "
                         "XNNPACK support, dequantization); measure on the target device (--android).")
    return notes


def _center(report) -> float | None:
    return report.median_ms if report.median_ms is not None else report.mean_ms


@click.command("bench", epilog=EXAMPLES)
@click.argument("model", metavar="MODEL.tflite", type=click.Path(exists=True, dir_okay=False))
@click.option("--threads", default="1", show_default=True, callback=_threads, help="Comma-separated thread counts, e.g. 1,2,4.")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(min=1), help="Timed runs.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Untimed warm-up runs.")
@click.option("--no-xnnpack", is_flag=True, help="Run LiteRT's built-in kernels without the XNNPACK delegate.")
@click.option("--compare", "other", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Second .tflite file; on the host the two run interleaved.")
@click.option("--runtime", type=click.Choice(["interpreter", "compiled_model"]), default="interpreter", show_default=True,
              help="LiteRT API on the host: the classic Interpreter or the CompiledModel API (what litert-benchmark times).")
@click.option("--android", is_flag=True, help="Run on an Android device with benchmark_model over adb.")
@click.option("--serial", default=None, help="Android device serial (adb devices); needed with several devices.")
@click.option("--binary", default="/data/local/tmp/benchmark_model", show_default=True, help="benchmark_model path on the device.")
@click.option("--adb", default="adb", show_default=True, help="adb executable.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Also write all reports to this JSON file.")
@click.pass_context
def bench(ctx, model, threads, runs, warmup, no_xnnpack, other, runtime, android, serial, binary, adb, json_out):
    """Measure the latency of MODEL.tflite (median, mean, p90, p99, min, sizes, memory)."""
    from click.core import ParameterSource

    if android and ctx.get_parameter_source("runtime") != ParameterSource.DEFAULT:
        raise click.UsageError(f"--runtime {runtime} chooses the LiteRT API on this machine; with --android the "
                               "device's benchmark_model chooses. Drop --runtime or --android.")
    from kprune.cli import quiet
    from kprune.errors import KPruneError
    from kprune.export.android import benchmark_android
    from kprune.export.benchmark import benchmark, compare
    from kprune.export.tflite import write_atomic

    xnnpack = not no_xnnpack
    rows, ratios, records = [], [], []
    try:
        for t in threads:
            if android:
                def run(path, t=t):
                    return benchmark_android(path, serial=serial, threads=t, runs=runs, warmup=warmup,
                                             use_xnnpack=xnnpack, binary=binary, adb=adb)

                reports = [run(model)] + ([run(other)] if other else [])
            elif other:
                with quiet.litert_logs_silenced(runtime == "compiled_model"):
                    result = compare(model, other, threads=t, runs=runs, warmup=warmup, use_xnnpack=xnnpack,
                                     runtime=runtime)
                reports = [result.a, result.b]
            else:
                with quiet.litert_logs_silenced(runtime == "compiled_model"):
                    reports = [benchmark(model, threads=t, runs=runs, warmup=warmup, use_xnnpack=xnnpack,
                                         runtime=runtime)]
            rows += list(zip(labels([r.path for r in reports]), reports))
            records += [r.to_dict() for r in reports]
            if other:
                a, b = _center(reports[0]), _center(reports[1])
                ratios.append((t, a / b if a and b else None))
    except KPruneError as err:
        raise click.ClickException(str(err)) from err
    host_compare = bool(other) and not android
    click.echo(format_reports(rows, memory=not host_compare))
    if host_compare:
        click.echo(f"note: {MEMORY_DROPPED}")
    for t, speedup in ratios:
        if speedup is not None:
            click.echo(f"{t} thread(s): {model} / {other} latency = {speedup:.3f}x (speedup of the second file; "
                       "above 1 it is faster)")
    for note in slower_notes(model, other, ratios):
        click.echo(note)
    if json_out:
        payload = {"reports": records, "speedups": {str(t): s for t, s in ratios}} if other else {"reports": records}
        if host_compare:
            payload["peak_memory_mb_note"] = MEMORY_DROPPED
        write_atomic(json_out, json.dumps(payload, indent=2).encode())
        click.echo(f"wrote {json_out}")
