"""Time per mask update of every criterion on keras.applications ResNet50 (224×224, weights=None).

For each criterion a fresh ResNet50 (``kprune.models.get("ResNet50", input_shape=(224, 224,
3), num_classes=1000)``, random weights) is wrapped with

* filter criteria: ``{criterion, granularity: filter, config_list: [{op_types: [Conv2D],
  sparsity: 0.5}]}`` (dependency-aware: residual-coupled convolutions share one mask;
  ``slim`` is global by definition, so its 0.5 is the fraction of all channels together);
* ``level`` (and the other weight-granularity criteria): ``granularity: weight`` on every
  Conv2D and Dense kernel at 0.5.

Then ``kprune.Pruner(wrapped, data=calib)`` is built and timed:

* ``groups``: the channel-group analysis of the graph (``pruner.groups()``, done once and
  cached; filter granularity only);
* ``first update``: the first ``Pruner.update()`` (statistics functions traced, scores,
  allocation, masks written into the wrappers and applied to the weights);
* ``later update``: the median of ``--repeats`` further ``update()`` calls.

Data criteria read a calibration set of ``--calib-batches`` batches of ``--batch-size``
images (``statistics_batches`` set to match). No ImageNet copy is available offline, so the
calibration images are uniform random pixels with random labels: this measures time only;
the scores themselves are not meaningful for random weights anyway.

Usage::

    python benchmarks/mask_update_time.py [--criteria l1 taylor_fo ...] [--repeats 3]
        [--json benchmarks/results/mask_update_time.json]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import write_json  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from criteria_sweep import host  # noqa: E402

FILTER = ("l1", "l2", "fpgm", "apoz", "mean_activation", "taylor_fo", "slim", "random", "snip")
WEIGHT = ("level", "global_magnitude", "layerwise_magnitude", "global_gradient_magnitude",
          "layerwise_gradient_magnitude")
DEFAULT = ("level", "l1", "l2", "fpgm", "apoz", "mean_activation", "taylor_fo", "slim", "random")


def recipe(criterion: str, sparsity: float, batches: int) -> dict:
    weight = criterion in WEIGHT
    scope = "global" if criterion in ("slim", "global_magnitude", "global_gradient_magnitude") else "layerwise"
    return {"prune": {"criterion": criterion, "granularity": "weight" if weight else "filter", "round_to": 1,
                      "scope": scope, "statistics_batches": batches, "schedule": {"name": "oneshot"},
                      "config_list": [{"op_types": ["Conv2D", "Dense"] if weight else ["Conv2D"],
                                       "sparsity": sparsity}]}}


def time_criterion(criterion, args, calib) -> dict:
    import keras

    import kprune
    keras.utils.set_random_seed(0)
    base = kprune.models.get("ResNet50", input_shape=(args.size, args.size, 3), num_classes=1000)
    t = time.perf_counter()
    wrapped = kprune.wrap(base, recipe(criterion, args.sparsity, args.calib_batches))
    t_wrap = time.perf_counter() - t
    del base
    pruner = kprune.Pruner(wrapped, data=calib)
    t_groups = None
    if criterion not in WEIGHT:
        t = time.perf_counter()
        pruner.groups()
        t_groups = time.perf_counter() - t
    t = time.perf_counter()
    pruner.update()
    first = time.perf_counter() - t
    later = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        pruner.update()
        later.append(time.perf_counter() - t)
    sp = kprune.sparsity(wrapped)["total"]
    row = {"criterion": criterion, "granularity": recipe(criterion, 0, 1)["prune"]["granularity"],
           "wrapped_layers": len(pruner.active), "wrap_s": t_wrap, "groups_s": t_groups,
           "first_update_s": first, "later_update_s": later, "median_later_s": statistics.median(later),
           "kernel_sparsity": sp, "skipped": len(pruner.skipped)}
    del pruner, wrapped
    gc.collect()
    return row


def table(rows) -> str:
    lines = ["| criterion | granularity | wrapped layers | wrap (s) | groups (s) | first update (s) | "
             "later update, median (s) | kernel sparsity after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = f"{r['groups_s']:.2f}" if r["groups_s"] is not None else "—"
        lines.append(f"| {r['criterion']} | {r['granularity']} | {r['wrapped_layers']} | {r['wrap_s']:.1f} | {g} | "
                     f"{r['first_update_s']:.2f} | {r['median_later_s']:.2f} | {r['kernel_sparsity']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--criteria", nargs="+", default=list(DEFAULT), choices=FILTER + WEIGHT)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--calib-batches", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="benchmarks/results/mask_update_time.json")
    args = p.parse_args(argv)
    import numpy as np

    rng = np.random.default_rng(0)
    calib = [(rng.uniform(0, 255, (args.batch_size, args.size, args.size, 3)).astype("float32"),
              rng.integers(0, 1000, args.batch_size).astype("int32")) for _ in range(args.calib_batches)]
    start = host()
    print(f"machine: {start}", flush=True)
    t0 = time.time()
    rows = []
    for crit in args.criteria:
        row = time_criterion(crit, args, calib)
        rows.append(row)
        print(f"{crit:<30} wrap {row['wrap_s']:.1f} s, groups {row['groups_s'] or 0:.2f} s, first update "
              f"{row['first_update_s']:.2f} s, later {['%.2f' % x for x in row['later_update_s']]} s, "
              f"sparsity {row['kernel_sparsity']:.3f}", flush=True)
    results = {"benchmark": "mask_update_time", "settings": vars(args), "machine": start,
               "uptime_after": host()["uptime"], "wall_seconds": time.time() - t0, "rows": rows}
    write_json(args.json, results)
    print()
    print(table(rows))
    print(f"\nwall time {results['wall_seconds'] / 60:.1f} min; load before: {start['uptime']}; "
          f"after: {results['uptime_after']}; raw JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
