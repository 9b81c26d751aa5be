"""kprune's core on the JAX backend, and a model pruned under JAX deployed from TensorFlow.

Keras fixes its backend when it is imported and this suite runs under TensorFlow, so the JAX
part runs in a subprocess (``jax_core_run.py``, with TensorFlow made unimportable) and writes
the numbers these tests check; ``tf_deploy_run.py`` then loads its compacted ``.keras`` file in
a TensorFlow subprocess and converts it to TFLite.
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

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="jax is not installed (pip install 'kprune[jax]')")

HERE = Path(__file__).parent
ROOT = Path(kprune.__file__).resolve().parents[1]


def _run(script, backend, out):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(HERE / script), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{script} under {backend} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _once(tmp_path_factory, name, script, backend, out=None):
    """Runs ``script`` once per test session, also under pytest-xdist (CI runs ``-n 2``): the
    workers share the folder above their own temporary folders, and the first one runs it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out = out or shared / "jax_core"
    out.mkdir(exist_ok=True)
    with open(shared / f"{name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / f"{name}.done").exists():
            _run(script, backend, out)
            (out / f"{name}.done").write_text("ok")
    return out


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    out = _once(tmp_path_factory, "jax", "jax_core_run.py", "jax")
    return out, json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory, jax_run):
    return _deploy(tmp_path_factory, jax_run, "tensorflow")


@pytest.fixture(scope="module")
def jax_export_run(tmp_path_factory, jax_run):
    return _deploy(tmp_path_factory, jax_run, "jax")


def _deploy(tmp_path_factory, jax_run, backend: str) -> dict:
    """``tf_deploy_run.py`` under ``backend`` on the JAX run's saved models; its JSON report."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    name = "tf" if backend == "tensorflow" else f"{backend}_export"
    out = _once(tmp_path_factory, name, "tf_deploy_run.py", backend, out=jax_run[0])
    return json.loads((out / f"{backend}_deploy.json").read_text())


def test_runs_on_jax_without_tensorflow(jax_run):
    _, r = jax_run
    assert r["backend"] == "jax"
    assert r["tensorflow_imported"] is False


def test_agp_in_fit_reaches_the_target_and_masked_weights_stay_zero(jax_run):
    _, r = jax_run
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
    # read by a callback after every step (live JAX state): 0 at step 0 (AGP's t = 0), then it
    # grows step by step to the target (whole filters: reached a few steps before step 8)
    steps = r["agp_sparsity_by_step"]
    assert len(steps) == 12 and steps == sorted(steps) and steps[0] == 0.0
    assert len(set(steps[:6])) == 6 and steps[-1] == third


def test_oneshot_level_short_form_in_fit(jax_run):
    _, r = jax_run
    for layer in ("c1", "c2"):
        assert r["oneshot_level"][layer]["zero_fraction"] == 0.75
        assert r["oneshot_level"][layer]["pruned_filters"] == 0
        assert r["oneshot_level"][layer]["max_abs_masked"] == 0.0


def test_iterative_schedule_rewinds_in_fit(jax_run):
    _, r = jax_run
    assert r["iterative_l2"]["c1"]["pruned_filters"] == 4
    assert r["iterative_l2"]["c2"]["pruned_filters"] == 8
    assert r["iterative_l2"]["c2"]["max_abs_masked"] == 0.0


@pytest.mark.parametrize("run", ["steps_per_execution", "taylor_in_fit", "lottery"])
def test_other_fit_paths(jax_run, run):
    _, r = jax_run
    assert r[run]["c1"]["pruned_filters"] == 4 and r[run]["c2"]["pruned_filters"] == 8
    assert r[run]["c1"]["max_abs_masked"] == 0.0 and r[run]["c2"]["max_abs_masked"] == 0.0


def test_lottery_ticket_rounds(jax_run):
    _, r = jax_run
    assert r["lottery_rounds"] == pytest.approx([1 - 0.5 ** 0.5, 0.5])
    assert r["train_function_reused"] is True


def test_soft_pruning_lets_pruned_filters_train(jax_run):
    _, r = jax_run
    assert r["soft"]["c1"]["pruned_filters"] == 4 and r["soft"]["c2"]["pruned_filters"] == 8
    assert r["soft"]["c1"]["max_abs_masked"] > 0.0  # no constraint: they trained after the last update


def test_slim_penalty_and_bn_recalibration(jax_run):
    _, r = jax_run
    assert r["slim_penalty_in_loss"] is True
    assert r["slim_in_fit"]["c1"]["pruned_filters"] == 4 and r["slim_in_fit"]["c1"]["max_abs_masked"] == 0.0
    assert r["recalibrate_bn"] == 1  # batches used on the compacted model


def test_attention_heads_pruned_in_fit_and_compacted(jax_run):
    _, r = jax_run
    assert r["heads"]["kept"] == 2
    assert r["heads"]["max_diff"] < 1e-5
    assert r["heads"]["macs"] < r["heads"]["macs_plain"]


def test_compact_equals_masked_model_with_fewer_macs(jax_run):
    _, r = jax_run
    assert r["compact_max_diff"] < 1e-5
    assert r["compact_filters"] == {"c1": 4, "c2": 8}
    assert r["macs"]["compact"] < 0.5 * r["macs"]["plain"]


def test_keras_files_round_trip(jax_run):
    _, r = jax_run
    assert r["wrapped_reload_masks_equal"] is True
    assert r["wrapped_reload_max_diff"] < 1e-6
    assert r["compact_reload_max_diff"] < 1e-6
    assert r["strip_has_wrappers"] is False and r["strip_max_diff"] < 1e-6


def test_handwritten_jax_loop_keeps_masked_weights_zero(jax_run):
    _, r = jax_run
    assert r["custom_loop_changed"] is True  # the loop trained
    for layer in ("c1", "c2"):
        assert r["custom_loop"][layer]["max_abs_masked"] == 0.0
    assert r["custom_loop"]["c1"]["pruned_filters"] == 4


def test_fit_without_callback_is_a_kprune_error(jax_run):
    _, r = jax_run
    assert r["no_callback_error"] == "KPruneError"
    assert "does not carry it" in r["no_callback_with_pruner_error"]


@pytest.mark.parametrize("key,expected", [
    ("l1/filter", {"c1": 0.5, "c2": 0.75}), ("l2/filter", {"c1": 0.5, "c2": 0.75}),
    ("fpgm/filter", {"c1": 0.5, "c2": 0.75}), ("random/filter", {"c1": 0.5, "c2": 0.75}),
    ("slim/filter", {"c1": 0.5}), ("level/weight", {"c1": 0.5, "c2": 0.5}), ("l1/2:4", {"c2": 0.5}),
    ("layerwise_magnitude/weight", {"c1": 0.5, "c2": 0.5}), ("apoz/filter", {"c1": 0.5, "c2": 0.75}),
    ("mean_activation/filter", {"c1": 0.5, "c2": 0.75}), ("taylor_fo/filter", {"c1": 0.5, "c2": 0.75}),
    ("snip/weight", {"c1": 0.5, "c2": 0.5}), ("l1/channel", {"c2": 0.5}), ("l2/block", {"c1": 0.5, "c2": 0.5}),
])
def test_criterion_on_jax(jax_run, key, expected):
    _, r = jax_run
    got = r["criteria"][key]
    assert got.pop("zero_where_masked") is True
    assert got == expected


@pytest.mark.parametrize("key", ["global_magnitude/weight", "global_gradient_magnitude/weight"])
def test_global_criterion_on_jax(jax_run, key):
    _, r = jax_run
    got = dict(r["criteria"][key])
    assert got.pop("zero_where_masked") is True
    # one threshold over both kernels (c1: 216 weights, c2: 1152): half of all weights
    assert abs((216 * got["c1"] + 1152 * got["c2"]) / 1368 - 0.5) < 1e-3
    assert got["c1"] != got["c2"]


def test_pruned_under_jax_deploys_to_tflite_from_tensorflow(jax_run, tf_run):
    assert tf_run["backend"] == "tensorflow"
    assert tf_run["macs"] == jax_run[1]["macs"]["compact"]
    assert tf_run["keras_max_diff"] < 1e-5
    assert tf_run["tflite_max_diff"] < 1e-4
    assert tf_run["tflite_bytes"] > 0


def test_to_tflite_from_a_jax_process(jax_run, jax_export_run):
    # TensorFlow installed: Keras converts the JAX model itself (TensorFlow is imported for it)
    assert jax_export_run["backend"] == "jax"
    assert jax_export_run["tflite_max_diff"] < 1e-4
    assert jax_export_run["macs"] == jax_run[1]["macs"]["compact"]


def test_statistics_on_jax_match_tensorflow(tf_run):
    assert len(tf_run["stats_keys"]) == 8
    for key, diff in tf_run["stats_max_rel_diff"].items():
        assert diff < 1e-4, key
