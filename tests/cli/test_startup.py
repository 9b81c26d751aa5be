"""Issue 17: the CLI starts at once (no TensorFlow for --help) and TensorFlow's start-up noise
is silenced unless --verbose."""

import json
import os
import subprocess
import sys
import time

import pytest

COMMANDS = ["", "prune", "count", "inspect", "export", "bench", "compare", "plot"]

PROBE = """
import json, sys, time
t0 = time.perf_counter()
from kprune.cli.main import cli
for name in {commands!r}:
    try:
        cli.main(([name] if name else []) + ["--help"], prog_name="kprune-cli", standalone_mode=False)
    except SystemExit:
        pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tensorflow_datasets"))
print(json.dumps({{"heavy": heavy, "seconds": time.perf_counter() - t0}}))
"""


def _env():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def test_help_of_every_command_imports_no_tensorflow():
    out = subprocess.run([sys.executable, "-c", PROBE.format(commands=COMMANDS)], capture_output=True,
                         text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], report["heavy"][:10]
    assert "Usage: kprune-cli prune" in out.stdout and "Usage: kprune-cli bench" in out.stdout


def test_help_takes_under_a_second():
    exe = os.path.join(os.path.dirname(sys.executable), "kprune-cli")
    if not os.path.exists(exe):
        pytest.skip("kprune-cli is not installed next to this interpreter")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, env=_env(), timeout=60)
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0 and "Usage: kprune-cli" in out.stdout
    assert min(times) < 1.0, times


def test_import_kprune_is_light_and_registers_with_keras(tmp_path):
    """``import kprune`` loads no Keras, yet a wrapped .keras file loads without custom_objects."""
    path = tmp_path / "wrapped.keras"
    make = f"""
import sys, kprune
assert "keras" not in sys.modules and "tensorflow" not in sys.modules, "import kprune loaded Keras"
import importlib.util
assert importlib.util.find_spec("keras") is not None   # an existence check must not consume the hook
import keras
m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
w = kprune.wrap(m, {{"prune": {{"config_list": [{{"op_types": ["Dense"], "sparsity": 0.5}}]}}}})
w.save({str(path)!r})
"""
    load = f"""
import kprune, keras
m = keras.saving.load_model({str(path)!r})
print(type(m.layers[0]).__name__)
"""
    for code in (make, load):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "PruneWrapper"


def test_tensorflow_noise_is_silenced_unless_verbose():
    exe = os.path.join(os.path.dirname(sys.executable), "kprune-cli")
    if not os.path.exists(exe):
        pytest.skip("kprune-cli is not installed next to this interpreter")
    out = subprocess.run([exe, "count", "lenet5", "--input-shape", "28,28,1"], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "params 61,706" in out.stdout
    for noise in ("absl::InitializeLog", "cuInit", "oneDNN", "cuda drivers", "cpu_feature_guard"):
        assert noise not in out.stderr, out.stderr
