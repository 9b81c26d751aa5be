"""``kprune-cli prune`` SIGKILLed mid-run, then ``--resume``: the same result.json as an
uninterrupted run (timing fields excluded), and no half-written file left behind."""

import importlib.util
import os

import pytest

import kprune.runner.pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("resume_trials", os.path.join(ROOT, "benchmarks", "resume_trials.py"))
RT = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(RT)

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist")
                                 and not os.environ.get("KPRUNE_DATA_DIR"), reason="needs Fashion-MNIST")]


def test_sigkill_during_finetune_then_resume_gives_the_same_result(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RT.TINY)
    out = str(tmp_path / "killed")
    # killed in the process: 0.3 s after the first fine-tuning epoch's line (inside epoch 2
    # or its checkpoint write)
    info = RT.kill_run(str(recipe), out, lines=4, delay=0.3)
    assert info["killed"], info["stderr"]
    assert 4 <= info["log_lines_at_kill"] < RT.LOG_LINES
    assert RT.whole_files(out) == []
    resumed = kprune.runner.pipeline.run(str(recipe), out, resume=True, verbose=0)
    reference = kprune.runner.pipeline.run(str(recipe), str(tmp_path / "reference"), verbose=0)
    drop = lambda r: {k: v for k, v in r.items() if k not in RT.VOLATILE}  # noqa: E731
    assert drop(resumed) == drop(reference)
    assert RT.comparable(os.path.join(out, "result.json")) == drop(reference)
    assert resumed["sparsity"]["total"] > 0.3


def test_outputs_are_written_through_temporary_files(tmp_path, monkeypatch):
    """Every model and JSON the pipeline writes goes to a .tmp- file first, then os.replace."""
    import kprune.io as kio
    renames = []
    real = os.replace

    def spy(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        return real(src, dst)

    monkeypatch.setattr(kio.os, "replace", spy)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RT.TINY.replace("epochs: 2,", "epochs: 1,").replace("finetune: {epochs: 3", "finetune: {epochs: 1"))
    kprune.runner.pipeline.run(str(recipe), str(tmp_path / "o"), verbose=0)
    written = {dst for _, dst in renames}
    assert {"dense.keras", "model.keras", "result.json", "state.json", "train-e1.keras", "finetune-e1.keras",
            "pruned.keras", "finetuned.keras"} <= written
    assert all(src.startswith(".tmp-") for src, _ in renames)
    assert not [n for n in os.listdir(tmp_path / "o") if n.startswith(".tmp-")]
