"""IG² on the IG² paper's 2-D toy cases (float64) and on a small CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathatlas.attribution import get_method
from pathatlas.attribution.references import References
from tests.unit.toys import ridge, t


def ig2(f, x, refs, **settings):
    settings = {"representation": "output", "n_references": refs.shape[0], **settings}
    return get_method("ig2", **settings).explain(f, x, target=0, references=refs)


def test_long_path_reaches_the_counterfactual_and_overcounts_along_the_ridge():
    # x1 descends 3 -> 2 (credit 1), then the path zig-zags along x1 = x2 - 1 to (0, 1),
    # crediting each move although f drops only once per pair: about (3, 2), sum 5 != f(x) - f(CF) = 3.
    # The exact zig-zag phase at the end depends on floating-point ties, so compare to one step (eta).
    out = ig2(ridge, t(3, 3), t(0, 0), n_steps=2001, step_size=0.005)
    torch.testing.assert_close(out.maps, torch.tensor([[3.0, 2.0]], dtype=torch.float64), rtol=0, atol=0.011)
    assert float(out.diagnostics["counterfactual_output"]) == pytest.approx(0.0, abs=0.006)
    assert float(out.diagnostics["completeness_residual"]) == pytest.approx(2.0, abs=0.02)


def test_short_path_stops_before_the_counterfactual():
    out = ig2(ridge, t(3, 3), t(0, 0), n_steps=201, step_size=0.02)
    torch.testing.assert_close(out.maps, torch.tensor([[2.5, 1.52]], dtype=torch.float64), rtol=0, atol=1e-9)
    assert float(out.diagnostics["counterfactual_output"]) == pytest.approx(0.5, abs=1e-9)


def test_two_references_are_averaged():
    out = ig2(ridge, t(3, 3), torch.tensor([[0.0, 0.0], [0.0, 5.0]], dtype=torch.float64), n_steps=401, step_size=0.02)
    # the reference gives (1.01, 0.99); which coordinate gets the extra 0.01 is a floating-point tie on the ridge
    assert float(out.maps.sum()) == pytest.approx(2.0, abs=0.011)
    torch.testing.assert_close(out.maps, torch.tensor([[1.0, 1.0]], dtype=torch.float64), rtol=0, atol=0.011)


class RidgeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()

    def forward(self, x):
        return ridge(self.features(x))


def test_input_space_representation_gives_the_straight_line():
    # distance measured on the input itself: GradPath is the straight line to the reference, so IG² ~ IG = (3, 0)
    out = ig2(RidgeNet(), t(3, 3), t(0, 0), representation="features", n_steps=201, step_size=0.0215)
    torch.testing.assert_close(out.maps, torch.tensor([[3.0, 0.0]], dtype=torch.float64), rtol=0, atol=0.01)


def test_explicand_equal_to_reference_gives_zeros_not_nan():
    # the reference divides by a zero gradient norm and returns NaN; we use an epsilon
    out = ig2(ridge, t(0, 0), t(0, 0), n_steps=10, step_size=0.1)
    assert torch.equal(out.maps, torch.zeros(1, 2, dtype=torch.float64))


def test_clip_keeps_the_path_in_the_box(tiny_cnn, images):
    pool = References(torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(3)), torch.arange(8) % 4)
    out = get_method("ig2", n_steps=20, n_references=2, clip=(0.0, 1.0), step_size=5.0).explain(
        tiny_cnn, images, target=1, references=pool
    )
    assert torch.isfinite(out.maps).all()
    # default representation: the input of the final Linear layer; references are of other classes
    with pytest.raises(ValueError, match="2 eligible references of another class, 3 are needed"):
        get_method("ig2", n_references=3).attribute(
            tiny_cnn, images, target=1, references=References(pool.images[:3], torch.tensor([1, 2, 3]))
        )


def test_representation_errors_name_the_layer(tiny_cnn, images):
    with pytest.raises(ValueError, match="the model has no layer 'fc'"):
        get_method("ig2", representation="fc", n_steps=2, n_references=1).attribute(
            tiny_cnn, images, target=0, references=images[:1]
        )
