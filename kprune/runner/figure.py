"""The comparison figure: accuracy vs params, vs FLOPs and vs measured TFLite latency.

NNI's "comparison of filter pruning algorithms" figure, with what a controlled comparison
needs: per pruner, the mean over seeds as a line with a ± std band (the seeds' own points
faint), the dense model as a star and a dashed line, baselines dashed, optional log-scale
x, and published reference points drawn hollow. matplotlib is imported here only (the
``plot`` extra: ``pip install kprune[plot]``).
"""

from __future__ import annotations

import os

from kprune.errors import KPruneError
from kprune.runner import references as refs
from kprune.runner.results import latency_threads, load_results, mean_std, value

MARKERS = "osD^vPdXp<>h"  # no "*": the star is the dense model
PANELS = (("params", "parameters"), ("flops", "FLOPs (= 2 × MACs)"), ("latency_ms", "TFLite latency, ms"))


def _series(results, metric, threads):
    """{(pruner, role, kind): [(x_mean, x_std, y_mean, y_std, xs, ys), ...] sorted by x}."""
    groups = {}
    for r in results:
        c = r["cell"]
        if c["role"] == "dense":
            continue
        groups.setdefault((c["pruner"], c["role"], c["target"]["kind"]), {}).setdefault(
            c["target"]["value"], []).append(r)
    out = {}
    for key, by_target in groups.items():
        pts = []
        for _, rs in sorted(by_target.items()):
            pairs = [(value(r, metric, threads), r["performance"]["finetuned"]) for r in rs]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if not pairs:
                continue
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            (xm, xsd), (ym, ysd) = mean_std(xs), mean_std(ys)
            pts.append((xm, xsd, ym, ysd, xs, ys))
        if pts:  # params and FLOPs: along x (a band needs increasing x); latency: in target order
            out[key] = sorted(pts, key=lambda p: p[0]) if metric != "latency_ms" else pts
    return out


def plot(results_dir, out=None, logx: bool = False, references=("auto",), threads=None, formats=("png", "svg")):
    """Draws the comparison figure of a ``compare`` results folder.

    Args:
        results_dir: the folder ``kprune-cli compare`` wrote.
        out: output path without extension (default ``results_dir/comparison``).
        logx: log-scale x axes (default False).
        references: reference point sources: ``"auto"`` (NNI's published CIFAR-10 curves
            when the sweep's model and dataset match them), ``"nni"`` (always), or paths to
            CSV files in the documented format (``kprune/runner/anchors/README.md``).
        threads: the latency panel's benchmark thread count (default: the smallest measured).
        formats: image formats to write (default PNG and SVG).

    Returns:
        The written file paths.

    Example:
        >>> kprune.runner.plot("runs/tiny", logx=True)
        ['runs/tiny/comparison.png', 'runs/tiny/comparison.svg']
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import EngFormatter, FuncFormatter
    except ImportError as e:
        raise KPruneError("plotting needs matplotlib: pip install 'kprune[plot]'.") from e

    results = load_results(results_dir)
    threads = str(threads) if threads is not None else latency_threads(results)
    dense = [r for r in results if r["cell"]["role"] == "dense"]
    model = dense[0]["model"] if dense else results[0]["model"]
    dataset = results[0]["dataset"]
    ref_rows = refs.select(references, model=model, dataset=dataset)
    series = {m: _series(results, m, threads) for m, _ in PANELS}
    names = list(dict.fromkeys(k[0] for s in series.values() for k in s))
    style = {n: (f"C{i % 10}", MARKERS[i % len(MARKERS)]) for i, n in enumerate(names)}
    kinds = {k[2] for s in series.values() for k in s}
    n_seeds = len({r["cell"]["seed"] for r in results})

    fig, axes = plt.subplots(1, 3, figsize=(18, 6.2), constrained_layout=True)
    handles = {}
    for ax, (metric, label) in zip(axes, PANELS):
        for (name, role, kind), pts in series[metric].items():
            color, marker = style[name]
            ls = "-" if role == "prune" and name != "random" else "--"
            xm = [p[0] for p in pts]
            ym = [100 * p[2] for p in pts]
            sd = [100 * p[3] for p in pts]
            text = name if len(kinds) == 1 else f"{name} ({kind})"
            (h,) = ax.plot(xm, ym, ls=ls, marker=marker, color=color, ms=7, lw=1.8, label=text, zorder=3)
            handles.setdefault(text, h)
            if metric == "latency_ms":  # measured x has its own spread: error bars both ways
                ax.errorbar(xm, ym, xerr=[p[1] for p in pts], yerr=sd, color=color, capsize=3, lw=1, ls="none",
                            zorder=2)
            elif len(pts) > 1:
                ax.fill_between(xm, [y - s for y, s in zip(ym, sd)], [y + s for y, s in zip(ym, sd)],
                                color=color, alpha=0.15, lw=0, zorder=1)
            else:
                ax.errorbar(xm, ym, yerr=sd, color=color, capsize=3, lw=1, zorder=2)
            for p in pts:
                ax.scatter(p[4], [100 * y for y in p[5]], color=color, marker=marker, s=12, alpha=0.35, zorder=2)
        dx = [value(r, metric, threads) for r in dense]
        dy = [r["performance"]["finetuned"] for r in dense]
        pairs = [(x, y) for x, y in zip(dx, dy) if x is not None]
        if pairs:
            (x_m, _), (y_m, y_s) = mean_std(p[0] for p in pairs), mean_std(p[1] for p in pairs)
            h = ax.scatter([x_m], [100 * y_m], marker="*", s=320, color="black", zorder=5,
                           label=f"dense ({len(pairs)} seed{'s' * (len(pairs) > 1)})")
            ax.axhline(100 * y_m, color="black", ls=":", lw=1, zorder=0)
            handles.setdefault("dense", h)
        ref_names = refs.pruner_names(ref_rows)
        for ref_name, pts in refs.points(ref_rows, metric).items():
            own = {n.lower(): style[n] for n in names}.get(ref_name.split(" ", 1)[-1].lower())
            color, marker = own if own else ("0.35", MARKERS[ref_names.index(ref_name) % len(MARKERS)])
            h = ax.scatter([p[0] for p in pts], [100 * p[1] for p in pts], facecolors="none", edgecolors=color,
                           marker=marker, s=40, lw=1.1, zorder=2, label=f"{ref_name} (reference)")
            handles.setdefault(f"{ref_name} (reference)", h)
        if metric == "latency_ms":
            label = f"{label} (median, {threads} thread{'s' * (threads not in (None, '1'))}, LiteRT)"
            if threads is None:
                ax.text(0.5, 0.5, "no latency measured\n(export.enabled: false)", ha="center", va="center",
                        transform=ax.transAxes, fontsize=12, color="0.4")
        ax.set_xlabel(label, fontsize=12)
        ax.set_ylabel("top-1 test accuracy after fine-tuning, %", fontsize=11)
        ax.grid(True, alpha=0.3)
        if logx:
            ax.set_xscale("log")
        fmt = EngFormatter(sep="") if metric != "latency_ms" else FuncFormatter(lambda x, _: f"{x:g}")
        ax.xaxis.set_major_formatter(fmt)
        if logx and metric == "latency_ms":
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.tick_params(labelsize=10)
    fig.suptitle(f"{results[0]['cell']['sweep']}: {model} on {dataset} — mean ± std over {n_seeds} "
                 f"seed{'s' * (n_seeds > 1)} (faint points: single seeds; dashed: baselines; dotted: dense accuracy)", fontsize=13)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncol=min(len(handles), 6), fontsize=10, frameon=False)
    out = os.fspath(out) if out is not None else os.path.join(os.fspath(results_dir), "comparison")
    paths = []
    for fmt in formats:
        path = f"{out}.{fmt}"
        fig.savefig(path, dpi=110)
        paths.append(path)
    plt.close(fig)
    return paths
