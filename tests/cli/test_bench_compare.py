"""Issue 17: `kprune-cli bench --compare` — labels and columns that do not depend on the order,
visible cuts, and a note when the second file is slower."""

import dataclasses
import os

import keras
import pytest
from click.testing import CliRunner

from kprune.cli import bench as bench_cmd
from kprune.cli.main import cli


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(x)))
    model.save(folder / "m.keras")
    a, b = str(folder / "dense.tflite"), str(folder / "pruned_with_a_long_name.tflite")
    runner = CliRunner()
    assert runner.invoke(cli, ["export", str(folder / "m.keras"), "--out", a]).exit_code == 0
    assert runner.invoke(cli, ["export", str(folder / "m.keras"), "--quantize", "dynamic", "--out", b]).exit_code == 0
    return a, b


def test_labels_are_names_or_paths_and_cuts_are_marked():
    assert bench_cmd.labels(["/x/a.tflite", "/y/b.tflite"]) == ["a.tflite", "b.tflite"]
    assert bench_cmd.labels(["/x/m.tflite", "/y/m.tflite"]) == ["/x/m.tflite", "/y/m.tflite"]
    long = "/runs/" + "d" * 60 + "/model.tflite"
    cut = bench_cmd.labels([long, "/x/model.tflite"], width=30)[0]
    assert cut.startswith("...") and cut.endswith("/model.tflite") and len(cut) == 30


def _table(output):
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model"))
    return lines[start], sorted(line.split()[0] for line in lines[start + 2:start + 4])


def test_compare_table_does_not_depend_on_the_order(two_files):
    a, b = two_files
    outs = [CliRunner().invoke(cli, ["bench", x, "--compare", y, "--runs", "3", "--warmup", "1"]) for x, y in
            ((a, b), (b, a))]
    assert all(o.exit_code == 0 for o in outs), [o.output for o in outs]
    (h1, l1), (h2, l2) = (_table(o.output) for o in outs)
    assert h1 == h2 and "mem MB" not in h1
    assert l1 == l2 == ["dense.tflite", "pruned_with_a_long_name.tflite"]
    assert all("no mem MB column with --compare" in o.output for o in outs)
    single = CliRunner().invoke(cli, ["bench", a, "--runs", "3", "--warmup", "1"])
    assert single.exit_code == 0 and "mem MB" in single.output


def test_a_slower_second_file_gets_a_note(two_files, monkeypatch):
    import importlib
    bm = importlib.import_module("kprune.export.benchmark")

    real = bm.compare

    def slower(path_a, path_b, **kwargs):
        res = real(path_a, path_b, **kwargs)
        b = dataclasses.replace(res.b, median_ms=res.a.median_ms * 4.4)
        return bm.Comparison(res.a, b, 4.4, 1 / 4.4)

    monkeypatch.setattr(bm, "compare", slower)
    a, b = two_files
    out = CliRunner().invoke(cli, ["bench", a, "--compare", b, "--runs", "3", "--warmup", "1"])
    assert out.exit_code == 0, out.output
    assert f"note: {b} is 4.40x SLOWER than {a} with 1 thread(s)" in out.output
    assert bench_cmd.slower_notes("a", "b", [(1, 1.2), (2, None)]) == []
