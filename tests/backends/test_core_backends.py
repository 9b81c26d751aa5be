"""kprune's core on the JAX and PyTorch backends, and a model pruned there deployed from TensorFlow.

Keras fixes its backend when it is imported and this suite runs under TensorFlow, so each
backend's part runs in a subprocess (``core_run.py``, with TensorFlow made unimportable) and
writes the numbers these tests check; ``tf_deploy_run.py`` then loads its compacted ``.keras``
file in a TensorFlow subprocess and converts it to TFLite.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kprune

try:
    import fcntl
except ImportError:  # not POSIX: each xdist worker runs the scripts itself
    fcntl = None

HERE = Path(__file__).parent
ROOT = Path(kprune.__file__).resolve().parents[1]
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(importlib.util.find_spec(b) is None,
                                                     reason=f"{b} is not installed (pip install 'kprune[{b}]')"))
            for b in ("jax", "torch")]


def _run(script, backend, out):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(HERE / script), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{script} under {backend} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _once(tmp_path_factory, name, script, backend, out):
    """Runs ``script`` once per test session, also under pytest-xdist (CI runs ``-n 2``): the
    workers share the folder above their own temporary folders, and the first one runs it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out = shared / out
    out.mkdir(exist_ok=True)
    with open(shared / f"{name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / f"{name}.done").exists():
            _run(script, backend, out)
            (out / f"{name}.done").write_text("ok")
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def core_run(request, tmp_path_factory):
    """``(out folder, result)`` of ``core_run.py`` under the parameter's backend."""
    backend = request.param
    out = _once(tmp_path_factory, backend, "core_run.py", backend, f"core_{backend}")
    return out, json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory, core_run):
    """``tf_deploy_run.py`` under TensorFlow on the core run's saved models."""
    return _deploy(tmp_path_factory, core_run, "tensorflow")


def _deploy(tmp_path_factory, run, backend: str) -> dict:
    """``tf_deploy_run.py`` under ``backend`` on a core run's saved models; its JSON report."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    out = run[0]
    _once(tmp_path_factory, f"{out.name}_deploy_{backend}", "tf_deploy_run.py", backend, out.name)
    return json.loads((out / f"{backend}_deploy.json").read_text())


def test_runs_without_tensorflow(core_run):
    out, r = core_run
    assert r["backend"] == out.name.removeprefix("core_")
    assert r["tensorflow_imported"] is False


def test_agp_in_fit_reaches_the_target_and_masked_weights_stay_zero(core_run):
    _, r = core_run
    # l1 filters at 50 %: c1 loses 4 of 8 filters; c2 loses 8 of 16 filters and the 4 input
    # channels c1 lost, so 1 - 8/16 * 4/8 = 75 % of its kernel is masked
    assert r["agp"]["c1"]["pruned_filters"] == 4 and r["agp"]["c1"]["zero_fraction"] == 0.5
    assert r["agp"]["c2"]["pruned_filters"] == 8 and r["agp"]["c2"]["zero_fraction"] == 0.75
    for layer in ("c1", "c2"):
        assert r["agp"][layer]["max_abs_masked"] == 0.0  # after 12 Adam steps
        assert r["agp"][layer]["min_abs_kept"] > 0.0
    assert r["agp_groups"] >= 2
    # AGP ends at the start of epoch 3 (step 8): the sparsity grows, then stays
    first, second, third = r["agp_sparsity_by_epoch"]
    assert 0.0 < first < second == third
    # read by a callback after every step (on JAX: the live state): 0 at step 0 (AGP's t = 0), then it
    # grows step by step to the target (whole filters: reached a few steps before step 8)
    steps = r["agp_sparsity_by_step"]
    assert len(steps) == 12 and steps == sorted(steps) and steps[0] == 0.0
    assert len(set(steps[:6])) == 6 and steps[-1] == third


def test_oneshot_level_short_form_in_fit(core_run):
    _, r = core_run
    for layer in ("c1", "c2"):
        assert r["oneshot_level"][layer]["zero_fraction"] == 0.75
        assert r["oneshot_level"][layer]["pruned_filters"] == 0
        assert r["oneshot_level"][layer]["max_abs_masked"] == 0.0


def test_iterative_schedule_rewinds_in_fit(core_run):
    _, r = core_run
    assert r["iterative_l2"]["c1"]["pruned_filters"] == 4
    assert r["iterative_l2"]["c2"]["pruned_filters"] == 8
    assert r["iterative_l2"]["c2"]["max_abs_masked"] == 0.0


@pytest.mark.parametrize("run", ["steps_per_execution", "taylor_in_fit", "lottery"])
def test_other_fit_paths(core_run, run):
    _, r = core_run
    if run == "steps_per_execution" and r["backend"] == "torch":
        assert run not in r  # Keras' PyTorch trainer takes steps_per_execution=1 only
        return
    assert r[run]["c1"]["pruned_filters"] == 4 and r[run]["c2"]["pruned_filters"] == 8
    assert r[run]["c1"]["max_abs_masked"] == 0.0 and r[run]["c2"]["max_abs_masked"] == 0.0


def test_lottery_ticket_rounds(core_run):
    _, r = core_run
    assert r["lottery_rounds"] == pytest.approx([1 - 0.5 ** 0.5, 0.5])
    assert r["train_function_reused"] is True


def test_soft_pruning_lets_pruned_filters_train(core_run):
    _, r = core_run
    assert r["soft"]["c1"]["pruned_filters"] == 4 and r["soft"]["c2"]["pruned_filters"] == 8
    assert r["soft"]["c1"]["max_abs_masked"] > 0.0  # no constraint: they trained after the last update


def test_slim_penalty_and_bn_recalibration(core_run):
    _, r = core_run
    assert r["slim_penalty_in_loss"] is True
    assert r["slim_in_fit"]["c1"]["pruned_filters"] == 4 and r["slim_in_fit"]["c1"]["max_abs_masked"] == 0.0
    assert r["recalibrate_bn"] == 1  # batches used on the compacted model


def test_attention_heads_pruned_in_fit_and_compacted(core_run):
    _, r = core_run
    assert r["heads"]["kept"] == 2
    assert r["heads"]["max_diff"] < 1e-5
    assert r["heads"]["macs"] < r["heads"]["macs_plain"]


def test_compact_equals_masked_model_with_fewer_macs(core_run):
    _, r = core_run
    assert r["compact_max_diff"] < 1e-5
    assert r["compact_filters"] == {"c1": 4, "c2": 8}
    assert r["macs"]["compact"] < 0.5 * r["macs"]["plain"]


def test_keras_files_round_trip(core_run):
    _, r = core_run
    assert r["wrapped_reload_masks_equal"] is True
    assert r["wrapped_reload_max_diff"] < 1e-6
    assert r["compact_reload_max_diff"] < 1e-6
    assert r["strip_has_wrappers"] is False and r["strip_max_diff"] < 1e-6


def test_handwritten_loop_keeps_masked_weights_zero(core_run):
    _, r = core_run
    assert r["custom_loop_changed"] is True  # the loop trained
    for layer in ("c1", "c2"):
        assert r["custom_loop"][layer]["max_abs_masked"] == 0.0
    assert r["custom_loop"]["c1"]["pruned_filters"] == 4


def test_fit_without_callback_is_a_kprune_error(core_run):
    _, r = core_run
    assert r["no_callback_error"] == "KPruneError"
    if r["backend"] == "jax":  # the masks cannot reach JAX's stateless step without the callback
        assert "does not carry it" in r["no_callback_with_pruner_error"]
    else:  # eager PyTorch: the constraints read the live masks, as in a TensorFlow custom loop
        assert r["no_callback_with_pruner_error"] is None


@pytest.mark.parametrize("key,expected", [
    ("l1/filter", {"c1": 0.5, "c2": 0.75}), ("l2/filter", {"c1": 0.5, "c2": 0.75}),
    ("fpgm/filter", {"c1": 0.5, "c2": 0.75}), ("random/filter", {"c1": 0.5, "c2": 0.75}),
    ("slim/filter", {"c1": 0.5}), ("level/weight", {"c1": 0.5, "c2": 0.5}), ("l1/2:4", {"c2": 0.5}),
    ("layerwise_magnitude/weight", {"c1": 0.5, "c2": 0.5}), ("apoz/filter", {"c1": 0.5, "c2": 0.75}),
    ("mean_activation/filter", {"c1": 0.5, "c2": 0.75}), ("taylor_fo/filter", {"c1": 0.5, "c2": 0.75}),
    ("snip/weight", {"c1": 0.5, "c2": 0.5}), ("l1/channel", {"c2": 0.5}), ("l2/block", {"c1": 0.5, "c2": 0.5}),
])
def test_criterion(core_run, key, expected):
    _, r = core_run
    got = r["criteria"][key]
    assert got.pop("zero_where_masked") is True
    assert got == expected


@pytest.mark.parametrize("key", ["global_magnitude/weight", "global_gradient_magnitude/weight"])
def test_global_criterion(core_run, key):
    _, r = core_run
    got = dict(r["criteria"][key])
    assert got.pop("zero_where_masked") is True
    # one threshold over both kernels (c1: 216 weights, c2: 1152): half of all weights
    assert abs((216 * got["c1"] + 1152 * got["c2"]) / 1368 - 0.5) < 1e-3
    assert got["c1"] != got["c2"]


def test_pruned_deploys_to_tflite_from_tensorflow(core_run, tf_run):
    assert tf_run["backend"] == "tensorflow"
    assert tf_run["macs"] == core_run[1]["macs"]["compact"]
    assert tf_run["keras_max_diff"] < 1e-5
    assert tf_run["tflite_max_diff"] < 1e-4
    assert tf_run["tflite_bytes"] > 0


def test_to_tflite_from_the_backend_process(tmp_path_factory, core_run):
    # TensorFlow installed: Keras converts a JAX model itself (through jax2tf); a PyTorch model is
    # saved and converted in a TensorFlow child process
    backend = core_run[1]["backend"]
    run = _deploy(tmp_path_factory, core_run, backend)
    assert run["backend"] == backend
    assert run["tflite_max_diff"] < 1e-4
    assert run["macs"] == core_run[1]["macs"]["compact"]
    if backend == "torch":
        assert run["tflite_bytes"] == _deploy(tmp_path_factory, core_run, "tensorflow")["tflite_bytes"]


def test_statistics_match_tensorflow(tf_run):
    assert len(tf_run["stats_keys"]) == 8
    for key, diff in tf_run["stats_max_rel_diff"].items():
        assert diff < 1e-4, key


def test_without_tensorflow_data_comes_from_numpy_and_export_says_why(core_run):
    _, r = core_run
    assert "needs TensorFlow" in r["to_tflite_without_tensorflow"]
    assert f"KERAS_BACKEND='{r['backend']}'" in r["to_tflite_without_tensorflow"]
    if "numpy_data" not in r:
        pytest.skip("needs Debian's dataset-fashion-mnist")
    d = r["numpy_data"]
    assert d["type"] == "ArrayBatches" and d["batches"] == 4 and d["test_examples"] == 128
    assert d["sparsity"] > 0.3  # the callback pruned during fit on the numpy batches
    assert 0.0 <= d["accuracy"] <= 1.0


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_int8_export_from_a_torch_process_passes_the_calibration_data():
    """int8 conversion in the TensorFlow child process gets the calibration samples (JSON + .npz, no pickle)."""
    pytest.importorskip("ai_edge_litert")
    code = ("import numpy as np, keras; from kprune.export import to_tflite, predict_tflite\n"
            "m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])\n"
            "x = np.random.default_rng(0).normal(size=(16, 8)).astype('float32')\n"
            "import sys; p = sys.argv[1]; to_tflite(m, p, quantize='int8', representative_data=x)\n"
            "print(float(np.abs(predict_tflite(p, x) - keras.ops.convert_to_numpy(m(x))).max()))")
    env = dict(os.environ, KERAS_BACKEND="torch")
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", code, os.path.join(tmp, "m.tflite")], env=env,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 0.1  # int8 rounding, calibrated on x
