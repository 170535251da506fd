"""PNG figures of an evaluation ``Report`` (as figures 4 and 5 of Huang et al., 2021).
matplotlib is imported only when a figure is drawn."""
from pathlib import Path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_plots(report, directory):
    """Writes ``bound_ratio.png`` (histogram of local / global bound per point,
    prod sigma_l(x) / prod ||W_l||) and ``iterations.png`` (per local layer, histogram of
    the power-iteration steps each point took to converge) into ``directory``.

    Returns:
        the paths written.
    """
    plt = _pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    eps = report.summary["epsilon"]

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(report.local_lipschitz / report.global_lipschitz, bins=40, range=(0.0, 1.0))
    ax.set_xlabel("local bound / global bound")
    ax.set_ylabel("points")
    ax.set_title(f"Lipschitz bound ratio at eps = {eps:g}")
    fig.tight_layout()
    ratio_path = directory / "bound_ratio.png"
    fig.savefig(ratio_path, dpi=100)
    plt.close(fig)

    names = list(report.summary["mean_iterations"])
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.2 * max(len(names), 1), 3),
                             squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        ax.hist(report.iterations[:, k], bins=30)
        ax.set_xlabel("iterations to converge")
        ax.set_title(name)
    axes[0, 0].set_ylabel("points")
    fig.tight_layout()
    iterations_path = directory / "iterations.png"
    fig.savefig(iterations_path, dpi=100)
    plt.close(fig)
    return [ratio_path, iterations_path]
