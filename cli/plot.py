"""``kprune-cli plot RESULTS_DIR``: the comparison figure and table (a thin shell over kprune.runner)."""

from __future__ import annotations

import click


@click.command()
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output path without extension (default RESULTS_DIR/comparison).")
@click.option("--logx", is_flag=True, help="Log-scale x axes (params, FLOPs, latency).")
@click.option("--reference", "references", multiple=True, default=("auto",), show_default=True,
              help="Reference points: 'auto' (NNI's CIFAR-10 curves when model and dataset match), 'nni', "
                   "or a CSV file (format: kprune/runner/anchors/README.md). Repeatable; 'none' for none.")
@click.option("--threads", default=None, type=int, help="Latency panel: benchmark thread count (default: smallest).")
def plot(results_dir, out, logx, references, threads):
    """Plot accuracy vs params, vs FLOPs and vs TFLite latency for a `kprune-cli compare` folder.

    Writes comparison.png and comparison.svg, and refreshes summary.md / summary.csv
    (mean ± std over seeds per pruner and target).

    \b
    Example:
      kprune-cli plot runs/tiny --logx --reference my_points.csv
    """
    from kprune import runner
    from kprune.errors import KPruneError
    refs = () if tuple(references) == ("none",) else tuple(r for r in references if r != "none")
    try:
        paths = runner.plot(results_dir, out=out, logx=logx, references=refs, threads=threads)
        summary = runner.write_summary(results_dir)
    except KPruneError as e:
        raise click.ClickException(str(e)) from e
    for p in paths + ([summary, summary[:-3] + ".csv"] if summary else []):
        click.echo(f"wrote {p}")
