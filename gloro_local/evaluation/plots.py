"""PNG figures of an evaluation ``Report`` (as figures 4 and 5 of Huang et al., 2021), and
the distribution of the certified radius. Each figure has a function that builds and
returns it (a matplotlib ``Figure``); ``save_plots`` writes them. matplotlib is imported
only when a figure is drawn, with the file-only Agg backend."""
from pathlib import Path

import numpy as np

PAD = 0.05  # fraction of the data range added on each side of a fitted axis


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _fitted_range(values):
    """(lo, hi) holding every value, padded by PAD of the range (of the value, or 1, when
    all values are equal)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = PAD * ((hi - lo) or abs(hi) or 1.0)
    return lo - pad, hi + pad


def bound_ratio_figure(report):
    """Histogram of the local / global bound per point, prod sigma_l(x) / prod ||W_l||,
    on an x-axis fitted to the ratios (``_fitted_range``); None without local bounds."""
    local = report.local_lipschitz
    if local.size == 0:
        return None
    ratio = local / report.global_lipschitz[:local.size]
    span = _fitted_range(ratio)
    fig, ax = _pyplot().subplots(figsize=(5, 3.5))
    ax.hist(ratio, bins=40, range=span)
    ax.set_xlim(*span)
    ax.set_xlabel("local bound / global bound")
    ax.set_ylabel("points")
    ax.set_title(f"Lipschitz bound ratio at eps = {report.summary['epsilon']:g}")
    fig.tight_layout()
    return fig


def iterations_figure(report):
    """Per local layer, a histogram of the power-iteration steps each point took to
    converge, under an overall title with eps and the iteration budget
    (``max_iterations`` steps, tolerance ``tol``); None without local bounds."""
    names = list(report.summary.get("mean_iterations", {}))
    if not names or report.iterations.size == 0:
        return None
    s = report.summary
    fig, axes = _pyplot().subplots(1, len(names), figsize=(3.2 * len(names), 3.2),
                                   squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        ax.hist(report.iterations[:, k], bins=30)
        ax.set_xlabel("iterations to converge")
        ax.set_ylabel("points")
        ax.set_title(name)
    fig.suptitle(f"Local power iteration at eps = {s['epsilon']:g}: budget "
                 f"{s['max_iterations']} steps, tol {s['tol']:g}")
    fig.tight_layout()
    return fig


def radius_figure(report):
    """The certified radii (``summary['radius']``): their histogram with the evaluation's
    eps marked, and the certified fraction at every eps, #{r > eps} / points; None when
    no radius was computed."""
    summary = report.summary.get("radius")
    if not summary:
        return None
    radius = np.asarray(summary["values"])
    eps = report.summary["epsilon"]
    hi = _fitted_range(np.append(radius, [0.0, eps]))[1]
    fig, (hist, curve) = _pyplot().subplots(1, 2, figsize=(8, 3.2))
    hist.hist(radius, bins=30, range=(0.0, hi))
    hist.axvline(eps, color="k", linestyle="--", label=f"eps = {eps:g}")
    hist.set_xlabel("certified radius (l2)")
    hist.set_ylabel("points")
    hist.legend()
    grid = np.linspace(0.0, hi, 200)
    curve.plot(grid, (radius[None, :] > grid[:, None]).mean(1))
    curve.axvline(eps, color="k", linestyle="--")
    curve.set_xlabel("eps")
    curve.set_ylabel("fraction certified")
    for ax in (hist, curve):
        ax.set_xlim(0.0, hi)
    fig.suptitle(f"Certified radius ({summary['bound']} bound, {summary['points']} points, "
                 f"median {summary['median']:.3g})")
    fig.tight_layout()
    return fig


FIGURES = {"bound_ratio.png": bound_ratio_figure, "iterations.png": iterations_figure,
           "radius.png": radius_figure}


def save_plots(report, directory):
    """Writes into ``directory`` each figure the report has data for: ``bound_ratio.png``
    (``bound_ratio_figure``), ``iterations.png`` (``iterations_figure``) and
    ``radius.png`` (``radius_figure``).

    Returns:
        the paths written.
    """
    plt = _pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in FIGURES.items():
        fig = build(report)
        if fig is None:
            continue
        fig.savefig(directory / name, dpi=100)
        plt.close(fig)
        paths.append(directory / name)
    return paths
