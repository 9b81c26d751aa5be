"""Whole experiments: the recipe pipeline and controlled comparisons of pruners.

:func:`kprune.runner.pipeline.run` is what ``kprune-cli prune`` runs: train or load → prune →
fine-tune → compact → count → export → benchmark, with checkpoints and ``--resume``.

A comparison sweep is one base recipe × pruners × targets × seeds (see
:mod:`kprune.runner.sweep`). :func:`compare` trains one dense model per seed, prunes a copy of
it in every cell with the same fine-tuning budget (ShrinkBench's protocol), adds the
``random``, ``uniform-width`` and ``scratch`` baselines, runs cells in parallel processes,
resumes, and writes one ``result.json`` per cell in NNI's schema plus
``summary.md``/``summary.csv``; :func:`plot` draws accuracy against params, FLOPs and measured
TFLite latency.

Example:
    >>> from kprune import runner
    >>> report = runner.compare("recipes/compare/tiny.yaml", "runs/tiny", jobs=2)
    >>> runner.plot("runs/tiny")          # runs/tiny/comparison.png and .svg
"""

from kprune.runner.compare import compare, plan, target_label
from kprune.runner.results import load_results, summarize, write_summary
from kprune.runner.sweep import Sweep


def plot(results_dir, out=None, logx: bool = False, references=("auto",), threads=None, formats=("png", "svg")):
    """Draws the comparison figure (matplotlib, imported here); see :func:`kprune.runner.figure.plot`."""
    from kprune.runner.figure import plot as _plot
    return _plot(results_dir, out=out, logx=logx, references=references, threads=threads, formats=formats)


__all__ = ["Sweep", "compare", "load_results", "plan", "plot", "summarize", "target_label", "write_summary"]
