"""Recipe fuzzing: how many generated bad recipes end in a clear kprune error.

Hypothesis generates bad recipes from ``tests/robustness/recipe_strategies.py`` (wrong types
and values at every schema key, unknown keys in every section, negative / >= 1 / NaN
sparsities, empty selectors, selectors matching nothing or unprunable layers,
contradictory settings, malformed YAML and random YAML-ish text). Each is validated,
used to wrap a tiny functional model and prune it once. A failure is *clear* when it is a
``kprune.KPruneError`` whose message names the key path and what is allowed (YAML syntax
errors: a ``RecipeError`` with the line). Random text that happens to be a valid recipe is
counted apart, not as a bad recipe.

    python benchmarks/fuzz_recipes.py --examples 1000 --json benchmarks/results/fuzz_recipes.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import write_json  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "robustness"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import keras
    from hypothesis import HealthCheck, given, seed, settings

    import recipe_strategies as R

    tried, clear, valid = collections.Counter(), collections.Counter(), collections.Counter()
    errors, failures = collections.Counter(), []

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(R.BAD_RECIPES)
    def run(case):
        err = R.attempt(case)
        ok, why = R.clear_error(case, err)
        category = case[0]
        if err is None and ok:
            valid[category] += 1
            return
        tried[category] += 1
        errors[type(err).__name__ if err is not None else "none"] += 1
        if ok:
            clear[category] += 1
        elif len(failures) < 50:
            failures.append({"category": category, "reason": why, "case": repr(case[1])[:500]})
        keras.backend.clear_session()

    t0 = time.time()
    run()
    summary = {"generated": sum(tried.values()) + sum(valid.values()), "bad_recipes_tried": sum(tried.values()),
               "clear_kprune_errors": sum(clear.values()), "valid_random_text": sum(valid.values()),
               "by_category": {k: {"tried": tried[k], "clear": clear[k]} for k in sorted(tried)},
               "error_types": dict(errors), "failures": failures, "seconds": round(time.time() - t0, 1),
               "seed": args.seed}
    print(json.dumps(summary, indent=2))
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
