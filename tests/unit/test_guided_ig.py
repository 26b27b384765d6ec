"""Guided IG against hand-checked cases of PAIR saliency's guided_ig.py, in float64."""

from __future__ import annotations

import pytest
import torch

from pathatlas.attribution import EngineOptions, GradientEngine, get_method
from tests.unit.toys import ig_paper, linear, quadratic, ridge, square_of_linear, t


def gig(f, x, baseline=None, **settings):
    return get_method("guided_ig", **settings).explain(f, x, target=0, baseline=baseline)


def close(got, expected, atol):
    torch.testing.assert_close(got, torch.tensor([expected], dtype=torch.float64), rtol=0, atol=atol)


def test_linear_function_with_and_without_baseline():
    close(gig(linear, t(10, 5), t(-1, -3), n_steps=10, fraction=0.1, max_dist=0.5).maps, (22, 8), 1e-12)
    close(gig(linear, t(10, 5), None, n_steps=10, fraction=0.1, max_dist=0.5).maps, (20, 5), 1e-12)


def test_quadratic_both_directions():
    close(gig(quadratic, t(3, 3), n_steps=1000).maps, (18, 9), 0.18)
    close(gig(quadratic, t(0, 0), t(3, 3), n_steps=1000).maps, (-18, -9), 0.18)


@pytest.mark.parametrize(
    ("max_dist", "fraction", "expected"),
    [
        (0.0, 0.1, (53.946, 26.973)),
        (1.0, 0.1, (71.892, 9.018)),
        (0.2, 0.1, (65.444, 15.471)),
        (0.02, 0.1, (55.355, 25.564)),
        (0.2, 1.0, (53.946, 26.973)),
    ],
)
def test_square_of_linear_band_widths(max_dist, fraction, expected):
    result = gig(square_of_linear, t(3, 3), n_steps=1000, fraction=fraction, max_dist=max_dist)
    close(result.maps, expected, 1e-3)
    # a left Riemann rule: every variant sums to about 81 (1 - 1/K) = 80.919 (exactly on the straight line)
    assert float(result.maps.sum()) == pytest.approx(
        81 * (1 - 1 / 1000), abs=1e-9 if max_dist == 0 or fraction == 1 else 0.02
    )


def test_ridge_bounded_stays_on_the_straight_line_and_unbounded_loses_completeness():
    close(gig(ridge, t(3, 3)).maps, (3, 0), 1e-9)  # defaults (200, 0.25, 0.02)
    close(gig(ridge, t(3, 3), max_dist=1.0).maps, (0.99, 0), 1e-9)
    close(gig(ridge, t(3, 3), n_steps=25, fraction=0.5, max_dist=1.0).maps, (1.08, 0), 1e-9)
    unbounded = gig(ridge, t(3, 3), n_steps=1000, fraction=0.5, max_dist=1.0)
    close(unbounded.maps, (0.996, 0), 1e-9)
    # on a ridge the residual is about -2 and is reported, not hidden
    assert float(unbounded.diagnostics["completeness_residual"]) == pytest.approx(-2.004, abs=1e-6)


def test_ig_paper_toy():
    close(gig(ig_paper, t(3, 1)).maps, (1.485, -0.495), 1e-9)
    close(gig(ig_paper, t(3, 1), max_dist=1.0).maps, (1.485, -0.495), 1e-9)
    close(gig(ig_paper, t(3, 1), n_steps=1000, fraction=0.5, max_dist=1.0).maps, (1.497, -0.499), 1e-9)


def test_input_equal_to_baseline_gives_zeros():
    close(gig(quadratic, t(2, 2), t(2, 2), n_steps=5).maps, (0, 0), 0)


def test_rows_of_a_batch_are_independent():
    x = torch.tensor([[3.0, 3.0], [10.0, 5.0], [0.0, 0.0], [1.0, -2.0]], dtype=torch.float64)
    together = gig(square_of_linear, x, n_steps=50, fraction=0.1, max_dist=0.2).maps
    alone = torch.cat(
        [gig(square_of_linear, x[i : i + 1], n_steps=50, fraction=0.1, max_dist=0.2).maps for i in range(4)]
    )
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    # a tiny memory budget splits the rows into groups of one: same result
    tight = GradientEngine(square_of_linear, EngineOptions(memory_budget_mb=1e-4))
    grouped = get_method("guided_ig", n_steps=50, fraction=0.1, max_dist=0.2).attribute(tight, x, target=0)
    torch.testing.assert_close(grouped, together, rtol=0, atol=1e-12)


def test_anchored_variant_is_guided_ig_between_anchors():
    # GIG(A) = sum over A + 1 segments of unbounded Guided IG from anchor j to anchor j + 1
    x, steps, anchors = t(3, 3), 60, 2
    anchored = gig(square_of_linear, x, n_steps=steps, fraction=0.1, anchors=anchors).maps
    pieces = sum(
        gig(square_of_linear, x * (j + 1) / 3, x * j / 3, n_steps=steps // 3, fraction=0.1, max_dist=1.0).maps
        for j in range(anchors + 1)
    )
    torch.testing.assert_close(anchored, pieces, rtol=0, atol=1e-9)
    assert float(anchored.sum()) == pytest.approx(81, abs=81 * 3 / steps)
    # anchors pull the path toward the straight line: closer to IG (54, 27) than unbounded GIG
    unbounded = gig(square_of_linear, x, n_steps=steps, fraction=0.1, max_dist=1.0).maps
    ig = torch.tensor([[54.0, 27.0]], dtype=torch.float64)
    assert (anchored - ig).abs().sum() < (unbounded - ig).abs().sum()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="fraction"):
        get_method("guided_ig", fraction=0)
    with pytest.raises(ValueError, match="at least anchors"):
        get_method("guided_ig", n_steps=3, anchors=5)
