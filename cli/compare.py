"""``kprune-cli compare SWEEP.yaml``: run a comparison sweep (a thin shell over kprune.runner.compare)."""

from __future__ import annotations

import os

import click

EPILOG = """\b
Examples:
  kprune-cli compare recipes/compare/tiny.yaml --out runs/tiny --jobs 2
  kprune-cli compare recipes/compare/fashion_mnist_cpu.yaml --out runs/fmnist --jobs 2
  kprune-cli compare recipes/compare/cifar10_gpu.yaml --set model.name=vgg16 --out runs/cifar-vgg16
  kprune-cli plot runs/tiny --logx
"""


@click.command(epilog=EPILOG)
@click.argument("sweep", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Results folder (default: runs/compare-<sweep name>).")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1),
              help="Cells run in parallel worker processes.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Skip finished cells and resume partial ones; --no-resume reruns every cell.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a value of the base recipe, e.g. --set model.name=vgg16 (repeatable; values are YAML).")
@click.option("--quiet", is_flag=True, help="No per-cell lines.")
def compare(sweep, out_dir, jobs, resume, overrides, quiet):
    """Run a comparison SWEEP: one base recipe × pruners × targets × seeds, plus baselines.

    One dense model per seed is trained once and shared by every cell; every pruner gets the
    same fine-tuning budget. Writes one result.json per cell (NNI's schema + seed, latency,
    size), compare.json and summary.md / summary.csv (mean ± std over seeds) into --out.
    """
    from kprune.cli import quiet
    quiet.import_tensorflow()
    from kprune import runner
    from kprune.errors import KPruneError
    try:
        s = runner.Sweep.load(sweep, overrides=overrides)
        out_dir = out_dir or os.path.join("runs", f"compare-{s.name}")
        report = runner.compare(s, out_dir, jobs=jobs, resume=resume, verbose=0 if quiet else 1)
    except KPruneError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every worker stopped; finished cells are kept in {out_dir} "
                   "(see compare.json). Rerun the same command to resume.", err=True)
        raise SystemExit(130) from None
    if report["summary"]:
        with open(report["summary"], encoding="utf-8") as f:
            click.echo("\n" + f.read())
    n = len(report["cells"])
    done = sum(c["status"] == "done" for c in report["cells"])
    skipped = [c for c in report["cells"] if c["status"] == "skipped"]
    click.echo(f"{done}/{n} cells done, {len(skipped)} skipped, {len(report['failed'])} failed "
               f"({report['seconds']:.0f} s); results in {report['out_dir']}")
    for c in skipped:
        click.echo(f"  skipped {c['id']}: {c['reason']}")
    if report["failed"]:
        for c in report["failed"]:
            click.echo(f"  FAILED {c['id']}: {c['error']}", err=True)
        raise click.ClickException(f"{len(report['failed'])} cell(s) failed; see error.txt in their folders, "
                                   "fix, and rerun the same command to resume.")
