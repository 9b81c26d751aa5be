"""Kill-and-resume trials: ``kprune-cli prune`` SIGKILLed at random points, then ``--resume``.

One uninterrupted run of a tiny recipe gives the reference ``result.json``. Each trial starts
the same run in a fresh folder, kills it with SIGKILL at a random point (after the run's
``log.jsonl`` reaches a random number of lines, plus a random delay, so kills land inside
epochs, checkpoints and stage changes), checks that every file left behind is whole (JSON
parses, ``.keras`` archives are valid zips), then runs ``--resume`` and compares its
``result.json`` with the reference, excluding timing fields (``seconds``, ``machine``).

    python benchmarks/resume_trials.py --trials 20 --json benchmarks/results/resume_trials.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = """
name: resume-tiny
seed: 3
model: {name: lenet300_100, width: 0.25}
data: {name: fashion_mnist, batch_size: 64, take: 384, test_take: 256}
train: {epochs: 2, optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.9}}
prune:
  criterion: taylor_fo
  granularity: filter
  statistics_batches: 2
  schedule: {name: agp, start_epoch: 0, end_epoch: 2, frequency: 3}
  config_list:
    - {op_types: [Dense], sparsity: 0.5}
    - {op_names: [predictions], exclude: true}
finetune: {epochs: 3, optimizer: {name: sgd, learning_rate: 0.02, momentum: 0.9}}
export: {enabled: false}
"""

#: lines an uninterrupted run writes to log.jsonl: 2 train epochs, prune, 3 finetune epochs, done
LOG_LINES = 7
VOLATILE = ("seconds", "machine")


def cli(recipe: str, out: str, resume: bool = False) -> list:
    cmd = [sys.executable, "-c", "from kprune.cli.main import main; main()", "prune", recipe, "--out", out,
           "--quiet"]
    return cmd + (["--resume"] if resume else [])


def env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0")


def comparable(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    return {k: v for k, v in result.items() if k not in VOLATILE}


def log_lines(out: str) -> int:
    try:
        with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def whole_files(out: str) -> list:
    """Problems with files a killed run left behind (temporary ``.tmp-*`` files excepted)."""
    bad = []
    for dirpath, _, files in os.walk(out):
        for name in files:
            path = os.path.join(dirpath, name)
            if name.startswith(".tmp-"):
                continue
            if name.endswith(".json"):
                try:
                    with open(path, encoding="utf-8") as f:
                        json.load(f)
                except ValueError as e:
                    bad.append(f"{name}: {e}")
            elif name.endswith(".keras"):
                if not zipfile.is_zipfile(path) or zipfile.ZipFile(path).testzip() is not None:
                    bad.append(f"{name}: not a whole .keras archive")
            elif name == "log.jsonl":
                with open(path, encoding="utf-8") as f:
                    lines = f.read().split("\n")
                for line in lines[:-1]:       # a kill may cut only the line being written
                    json.loads(line)
    return bad


def kill_run(recipe: str, out: str, lines: int, delay: float, timeout: float = 300) -> dict:
    """Starts a run, SIGKILLs it once log.jsonl has ``lines`` lines and ``delay`` s passed."""
    proc = subprocess.Popen(cli(recipe, out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    t0 = time.time()
    reached = None
    while proc.poll() is None and time.time() - t0 < timeout:
        if reached is None and log_lines(out) >= lines:
            reached = time.time()
        if reached is not None and time.time() - reached >= delay:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    return {"killed": proc.returncode == -signal.SIGKILL, "returncode": proc.returncode,
            "log_lines_at_kill": log_lines(out), "stderr": proc.stderr.read().decode()[-2000:]}


def trial(recipe: str, reference: dict, work: str, i: int, rng: random.Random) -> dict:
    out = os.path.join(work, f"trial{i}")
    lines, delay = rng.randint(0, LOG_LINES - 2), round(rng.uniform(0.0, 2.5), 2)
    info = {"trial": i, "kill_after_lines": lines, "delay_s": delay}
    info.update(kill_run(recipe, out, lines, delay))
    info["broken_files"] = whole_files(out)
    res = subprocess.run(cli(recipe, out, resume=True), env=env(), capture_output=True, text=True, timeout=600)
    info["resume_returncode"] = res.returncode
    if res.returncode != 0:
        info["resume_stderr"] = res.stderr[-2000:]
        info["identical"] = False
        return info
    got = comparable(os.path.join(out, "result.json"))
    info["identical"] = got == reference
    if not info["identical"]:
        info["diff"] = {k: [reference.get(k), got.get(k)] for k in set(reference) | set(got)
                        if reference.get(k) != got.get(k)}
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="kprune-resume-")
    os.makedirs(work, exist_ok=True)
    recipe = os.path.join(work, "tiny.yaml")
    with open(recipe, "w", encoding="utf-8") as f:
        f.write(TINY)
    t0 = time.time()
    ref_out = os.path.join(work, "reference")
    res = subprocess.run(cli(recipe, ref_out), env=env(), capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        sys.exit(f"reference run failed:\n{res.stderr[-3000:]}")
    reference = comparable(os.path.join(ref_out, "result.json"))
    rng = random.Random(args.seed)
    trials = []
    for i in range(args.trials):
        info = trial(recipe, reference, work, i, rng)
        trials.append(info)
        print(json.dumps({k: v for k, v in info.items() if k not in ("stderr", "resume_stderr")}), flush=True)
    summary = {"trials": len(trials), "killed": sum(t["killed"] for t in trials),
               "identical": sum(t["identical"] for t in trials),
               "broken_files": sum(bool(t["broken_files"]) for t in trials),
               "kill_points": sorted({t["log_lines_at_kill"] for t in trials}),
               "minutes": round((time.time() - t0) / 60, 1), "recipe": TINY.strip(),
               "reference_performance": reference["performance"], "details": trials}
    print(json.dumps({k: v for k, v in summary.items() if k != "details"}, indent=2))
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
