"""The evaluation figures, built from a hand-made ``Report`` and inspected as objects."""
import matplotlib
import numpy as np
import pytest

from gloro_local.evaluation import (Certificate, Report, bound_ratio_figure,
                                    iterations_figure, radius_figure, save_plots)

matplotlib.use("Agg")
EPS = 0.3


def report(points=50, bound_points=20, radius=True):
    rng = np.random.default_rng(0)
    n = points
    certificate = Certificate(EPS, np.zeros(n, np.int32), np.ones(n, bool),
                              np.full(n, "local"), np.full(n, "local"), np.ones(n),
                              np.ones(n), np.full(n, 4.0), np.ones((n, 2), np.int32))
    values = rng.uniform(0.05, 0.9, 30)
    summary = dict(points=n, epsilon=EPS, tol=1e-4, max_iterations=2000,
                   mean_iterations={"dense": 30.0, "dense_1": 12.0},
                   radius=dict(points=30, bound="local", median=float(np.median(values)),
                               values=values.tolist()) if radius else None)
    return Report(summary, certificate, rng.uniform(1.2, 2.0, bound_points),
                  np.full(n, 4.0), rng.integers(5, 60, (bound_points, 2)),
                  np.zeros((bound_points, 2)), None)


def test_bound_ratio_axis_is_fitted_to_the_ratios():
    r = report()
    ratio = r.local_lipschitz / 4.0  # in [0.3, 0.5]
    fig = bound_ratio_figure(r)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo <= ratio.min() and hi >= ratio.max()
    assert hi - lo <= 1.2 * (ratio.max() - ratio.min())  # not the old fixed (0, 1)
    assert sum(patch.get_height() for patch in ax.patches) == ratio.size  # every point drawn
    assert ax.get_ylabel() == "points" and "eps = 0.3" in ax.get_title()


def test_bound_ratio_of_identical_points_still_has_a_range():
    r = report()
    r.local_lipschitz[:] = 4.0
    lo, hi = bound_ratio_figure(r).axes[0].get_xlim()
    assert lo < 1.0 < hi


def test_iterations_figure_has_a_title_with_eps_and_budget_and_every_y_label():
    fig = iterations_figure(report())
    title = fig.get_suptitle()
    assert "eps = 0.3" in title and "2000 steps" in title and "tol 0.0001" in title
    assert [ax.get_title() for ax in fig.axes] == ["dense", "dense_1"]
    assert all(ax.get_ylabel() == "points" for ax in fig.axes)


def test_radius_figure_shows_the_distribution_and_the_certified_fraction():
    r = report()
    values = np.array(r.summary["radius"]["values"])
    fig = radius_figure(r)
    hist, curve = fig.axes
    for ax in (hist, curve):
        lo, hi = ax.get_xlim()
        assert lo == 0.0 and hi >= max(values.max(), EPS)
    assert sum(patch.get_height() for patch in hist.patches) == values.size
    grid, fraction = curve.lines[0].get_data()
    at_eps = np.interp(EPS, grid, fraction)
    assert at_eps == pytest.approx(np.mean(values > EPS), abs=0.05)
    assert fraction[0] == 1.0 and fraction[-1] == 0.0
    assert "30 points" in fig.get_suptitle()


def test_save_plots_writes_the_figures_it_has_data_for(tmp_path):
    paths = save_plots(report(), tmp_path / "all")
    assert [p.name for p in paths] == ["bound_ratio.png", "iterations.png", "radius.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    paths = save_plots(report(bound_points=0, radius=False), tmp_path / "none")
    assert paths == []
