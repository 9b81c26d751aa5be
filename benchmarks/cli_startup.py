"""Time ``kprune-cli --help`` (and every subcommand's ``--help``) in fresh processes.

Each command runs ``--repeats`` times as a subprocess (the installed ``kprune-cli`` next to
this interpreter); the wall clock of the whole process is timed. For scale, the same is done
for ``python -c "import tensorflow, keras"`` (what every command paid before issue 17) and
for ``kprune-cli count lenet5`` (a command that does need TensorFlow). The stderr of the
``count`` run is checked for TensorFlow's start-up lines.

Usage::

    python benchmarks/cli_startup.py [--repeats 5] [--out FILE.json]

Prints a markdown table and writes it to ``--out`` (default ``benchmarks/results/cli_startup.json``)
with the host and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_json  # noqa: E402

COMMANDS = ["", "prune", "count", "inspect", "export", "bench", "compare", "plot"]
NOISE = ("absl::InitializeLog", "cuInit", "oneDNN", "cuda drivers", "cpu_feature_guard")


def _time(argv, repeats, env):
    times, stderr = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise SystemExit(f"{argv} failed:\n{out.stderr}")
        stderr = out.stderr
    return times, stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "cli_startup.json"))
    args = parser.parse_args()
    exe = os.path.join(os.path.dirname(sys.executable), "kprune-cli")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    load_before = os.getloadavg()
    rows = []
    cases = [(f"kprune-cli {c} --help".replace("  ", " "), [exe] + ([c] if c else []) + ["--help"]) for c in COMMANDS]
    cases += [('python -c "import tensorflow, keras"', [sys.executable, "-c", "import tensorflow, keras"]),
              ("kprune-cli count lenet5 --input-shape 28,28,1", [exe, "count", "lenet5", "--input-shape", "28,28,1"])]
    print(f"| command | median s | min s | max s | TensorFlow noise on stderr |\n|---|---:|---:|---:|---|")
    for label, argv in cases:
        times, stderr = _time(argv, args.repeats, env)
        noise = [n for n in NOISE if n in stderr]
        rows.append({"command": label, "seconds": times, "median_s": statistics.median(times),
                     "min_s": min(times), "max_s": max(times), "noise": noise})
        print(f"| `{label}` | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} | "
              f"{', '.join(noise) or 'none'} |", flush=True)
    print(f"\n{args.repeats} runs each, fresh processes, wall clock; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    write_json(args.out, {"rows": rows, "repeats": args.repeats, "machine": platform.platform(),
                          "cpus": os.cpu_count()}, load_before=load_before)


if __name__ == "__main__":
    main()
