"""Compare sparsity searches under one budget: accuracy after the same fine-tuning, and search cost.

Trains a zoo model on Fashion-MNIST (cached per seed), then for every algorithm runs
``kprune.search`` under the budget with the default evaluator (validation accuracy on
``--eval-take`` examples), fine-tunes the chosen pruned model for the same number of epochs,
and reports test accuracy, measured params/FLOPs and the search's evaluations and minutes.

    python benchmarks/search_compare.py --model resnet20 --width 0.25 --constraint params --budget 0.1 \\
        --algorithms uniform,sensitivity,simulated_annealing,netadapt,autocompress,amc --seeds 0 1 2

Each algorithm runs with CPU-sized settings (``ALGORITHM_OPTIONS`` below, recorded in the JSON):
annealing temperatures are scaled to accuracy scores in [0, 1] (NNI's default of 100 accepts
every move), NetAdapt has no short-term fine-tuning unless ``--netadapt-finetune-steps N``, AMC
plays 60 episodes (20 random). ``--tag T`` names a variant's result file and search folders.
``--workers N`` evaluates candidates in N local processes (same results).

Writes ``benchmarks/results/search_<model>_w<width>_<constraint>_<budget>.json`` and prints a
markdown table (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _optimizer(name, lr):
    return {"name": name, "learning_rate": lr, **({"momentum": 0.9} if name == "sgd" else {})}


def _recipe(args, seed):
    import kprune
    return kprune.Recipe.from_dict({
        "seed": seed,
        "data": {"name": "fashion_mnist", "batch_size": 128, "take": args.train_take},
        "train": {"epochs": args.epochs, "optimizer": _optimizer(args.optimizer, args.lr),
                  "lr_schedule": args.lr_schedule, "weight_decay": args.weight_decay},
        "finetune": {"epochs": args.finetune_epochs, "optimizer": _optimizer(args.optimizer, args.finetune_lr),
                     "lr_schedule": args.lr_schedule, "weight_decay": args.weight_decay},
        "prune": {"criterion": "l1", "granularity": "filter", "round_to": 1, "recalibrate_bn": args.recalibrate_bn,
                  "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.5}]},
    })


#: CPU-sized settings per algorithm (the searches' own defaults are the papers').
ANNEAL = {"start_temperature": 0.1, "stop_temperature": 0.01, "cool_down_rate": 0.85}
ALGORITHM_OPTIONS = {
    "uniform": {},
    "sensitivity": {"grid": [0.2, 0.4, 0.6, 0.8]},
    "simulated_annealing": dict(ANNEAL),
    "netadapt": {"step": 0.1},
    "autocompress": {"rounds": 2, "max_evaluations": 8, "admm_rounds": 2, "training_steps": 30, **ANNEAL},
    "amc": {"episodes": 60, "warmup": 20, "hidden": 64, "batch_size": 32},
}


def _train(model, recipe, section, seed):
    import keras
    from kprune import data
    from kprune.models import training
    cfg = getattr(recipe, section)
    ds = data.load("fashion_mnist", split="train", batch_size=128, shuffle=True, seed=seed,
                   take=recipe.data["take"], validation_fraction=0.1)
    steps = training.steps_in(ds)
    training.compile_model(model, cfg, steps, cfg["epochs"])
    keras.utils.set_random_seed(seed)
    model.fit(ds, epochs=cfg["epochs"], verbose=0)
    return model


def run(args):
    import keras

    import kprune
    from kprune import data, search
    from kprune.models import training

    test = data.load("fashion_mnist", split="test", batch_size=256, shuffle=False, take=args.test_take)
    rows = []
    for seed in args.seeds:
        recipe = _recipe(args, seed)
        dense_path = os.path.join(args.work, f"dense_{args.model}_{args.width}_{seed}.keras")
        if os.path.exists(dense_path):
            dense = keras.saving.load_model(dense_path)
        else:
            keras.utils.set_random_seed(seed)
            dense = kprune.models.get(args.model, input_shape=(28, 28, 1), num_classes=10, width=args.width)
            dense = _train(dense, recipe, "train", seed)
            os.makedirs(args.work, exist_ok=True)
            dense.save(dense_path)
        dense_acc = training.accuracy(dense, test)
        for name in args.algorithms:
            t0 = time.time()
            options = {"eval_take": args.eval_take, **ALGORITHM_OPTIONS.get(name, {}),
                       "executor": {"name": "local", "workers": args.workers}}
            if args.no_prior and name in ("simulated_annealing", "autocompress"):
                options["prior"] = False
            if name == "netadapt":
                options["step"] = args.netadapt_step
                options["finetune_steps"] = args.netadapt_finetune_steps
            if args.constraint == "latency":
                options["latency"] = {"grid": [0.25, 0.5, 1.0], "runs": 30, "threads": 1,
                                      "cache": os.path.join(args.work, f"latency_{args.model}_{args.width}_{seed}.json")}
            result = search.run(dense, recipe, name=name, constraint=args.constraint, budget=args.budget,
                                seed=seed, verbose=0, out_dir=os.path.join(args.work, f"{name}{args.tag}_{seed}"),
                                **options)
            minutes = (time.time() - t0) / 60
            pruned = result.pruned  # BatchNorm statistics already recalibrated with --recalibrate-bn
            pruned_acc = training.accuracy(pruned, test)
            pruned = _train(pruned, recipe, "finetune", seed)
            small = kprune.compact(pruned)
            c = kprune.count(small)
            row = {"seed": seed, "algorithm": name, "dense_accuracy": dense_acc, "pruned_accuracy": pruned_acc,
                   "finetuned_accuracy": training.accuracy(small, test), "params": c.params, "flops": c.flops,
                   "original": result.original, "limit": result.limit, "evaluations": result.evaluations,
                   "search_minutes": round(minutes, 2), "allocation": result.allocation,
                   "measured": result.cost, "met": result.met, "options": options}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "allocation"}), flush=True)
    return rows


def table(rows, args) -> str:
    out = [f"{args.model} width {args.width}, Fashion-MNIST ({args.train_take} training examples, "
           f"{args.epochs} epochs), {args.constraint} budget {args.budget}, {args.finetune_epochs} fine-tuning "
           f"epoch(s), seeds {args.seeds}; dense test accuracy "
           f"{statistics.mean(r['dense_accuracy'] for r in rows):.4f} (mean over seeds)", "",
           "| algorithm | test acc. after fine-tuning | before fine-tuning | params | FLOPs | measured "
           f"{args.constraint} / limit | evaluations | search min |",
           "|---|---|---|---|---|---|---|---|"]

    def ms(values, fmt):
        if len(values) == 1:
            return fmt.format(values[0])
        return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"

    for name in args.algorithms:
        rs = [r for r in rows if r["algorithm"] == name]
        out.append(f"| {name} | {ms([r['finetuned_accuracy'] for r in rs], '{:.4f}')} | "
                   f"{ms([r['pruned_accuracy'] for r in rs], '{:.4f}')} | {ms([r['params'] for r in rs], '{:.0f}')} | "
                   f"{ms([r['flops'] for r in rs], '{:.0f}')} | "
                   f"{ms([r['measured'][args.constraint] / r['limit'] for r in rs], '{:.3f}')} | "
                   f"{ms([r['evaluations'] for r in rs], '{:.0f}')} | "
                   f"{ms([r['search_minutes'] for r in rs], '{:.2f}')} |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--constraint", default="params", choices=("params", "flops", "latency"))
    p.add_argument("--budget", type=float, default=0.1)
    p.add_argument("--algorithms", type=lambda s: s.split(","),
                   default=["uniform", "sensitivity", "simulated_annealing", "netadapt"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--train-take", type=int, default=12000)
    p.add_argument("--test-take", type=int, default=2000)
    p.add_argument("--eval-take", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--netadapt-step", type=float, default=0.1)
    p.add_argument("--netadapt-finetune-steps", type=int, default=0,
                   help="NetAdapt's short-term fine-tuning steps per proposal (the paper's; 0: none)")
    p.add_argument("--no-prior", action="store_true",
                   help="simulated annealing / AutoCompress without the larger-units-pruned-more prior")
    p.add_argument("--tag", default="", help="suffix of the result file and search folders (variants of a run)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"), help="sgd has momentum 0.9")
    p.add_argument("--lr", type=float, default=0.002, help="training learning rate")
    p.add_argument("--finetune-lr", type=float, default=0.001)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--recalibrate-bn", type=int, default=0, help="BatchNorm recalibration batches after pruning")
    p.add_argument("--work", default="/tmp/kprune_search_compare")
    p.add_argument("--workers", type=int, default=1, help="local worker processes per search (same results)")
    args = p.parse_args()
    rows = run(args)
    text = table(rows, args)
    print(text)
    path = os.path.join(os.path.dirname(__file__), "results",
                        f"search_{args.model}_w{args.width}_{args.constraint}_{args.budget}{args.tag}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    from kprune.io import atomic_write_json
    atomic_write_json(path, {"args": vars(args), "rows": rows, "table": text, "loadavg_after": os.getloadavg(),
                             "algorithm_options": ALGORITHM_OPTIONS})


if __name__ == "__main__":
    main()
