"""pathatlas IG, Guided IG and Blur IG beside captum and PAIR saliency, in one process.

Same model (the committed demo CNN, run in float64 so only the algorithms differ), same inputs
(synthetic benchmark images), same target. Prints, per method, the largest absolute difference
relative to the reference map's largest magnitude, and the wall time of each side.

    .venv/bin/python -m benchmarks.compare_references [--n-images 4] [--steps 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import saliency.core as saliency
import torch
from captum.attr import IntegratedGradients as CaptumIG

from benchmarks.reference_shims import patch_saliency
from pathatlas.attribution import get_method
from pathatlas.attribution.data.synthetic import SyntheticConfig, generate_arrays
from pathatlas.attribution.models.demo_cnn import load_demo_model


def pair_call_model(model: torch.nn.Module, target: int):
    """PAIR's call_model_function for a CHW float64 model and a fixed target (returns logit gradients)."""

    def call(x_batch: np.ndarray, call_model_args=None, expected_keys=None) -> dict:
        x = torch.tensor(np.asarray(x_batch), dtype=torch.float64)
        hwc = x.ndim == 4 and x.shape[-1] == 3  # Blur IG works in HWC
        z = (x.permute(0, 3, 1, 2) if hwc else x).requires_grad_(True)
        (g,) = torch.autograd.grad(model(z)[:, target].sum(), z)
        g = g.permute(0, 2, 3, 1) if hwc else g
        return {saliency.INPUT_OUTPUT_GRADIENTS: g.numpy()}

    return call


Row = tuple[str, str, float, float, float]  # ours, reference, max |diff| / max |ref|, ours s, reference s


def compare(label: str, ours_fn: Callable[[], Any], theirs_fn: Callable[[], Any], reference: str) -> Row:
    """Run both sides once, timed, and compare their maps."""
    start = time.perf_counter()
    ours = np.asarray(ours_fn(), dtype=np.float64)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = np.asarray(theirs_fn(), dtype=np.float64)
    t_theirs = time.perf_counter() - start
    return label, reference, float(np.abs(ours - theirs).max() / np.abs(theirs).max()), t_ours, t_theirs


def integrated_gradients_row(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, k: int) -> Row:
    """Both Gauss-Legendre with ``k`` nodes, zero baseline, the whole batch at once."""
    return compare(
        f"integrated_gradients (gausslegendre, {k})",
        lambda: get_method("integrated_gradients", n_steps=k).attribute(model, x, target=targets).numpy(),
        lambda: CaptumIG(model).attribute(x, target=targets, n_steps=k, method="gausslegendre").detach().numpy(),
        "captum IntegratedGradients",
    )


def guided_ig_row(
    model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, k: int, fraction: float, max_dist: float
) -> Row:
    """Ours on the whole batch; PAIR's one image at a time, as it runs."""

    def pair() -> np.ndarray:
        return np.stack(
            [
                saliency.GuidedIG().GetMask(
                    x[i].numpy(),
                    pair_call_model(model, int(targets[i])),
                    x_steps=k,
                    fraction=fraction,
                    max_dist=max_dist,
                    x_baseline=np.zeros_like(x[i].numpy()),
                )
                for i in range(len(x))
            ]
        )

    method = get_method("guided_ig", n_steps=k, fraction=fraction, max_dist=max_dist)
    label = f"guided_ig ({k}, fraction {fraction}, max_dist {max_dist})"
    return compare(label, lambda: method.attribute(model, x, target=targets).numpy(), pair, "PAIR saliency GuidedIG")


def blur_ig_row(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, k: int) -> Row:
    """PAIR wants HWC images; max_sigma 8 suits 48-pixel images."""

    def pair() -> np.ndarray:
        return np.stack(
            [
                saliency.BlurIG()
                .GetMask(x[i].permute(1, 2, 0).numpy(), pair_call_model(model, int(targets[i])), max_sigma=8, steps=k)
                .transpose(2, 0, 1)
                for i in range(len(x))
            ]
        )

    ours = get_method("blur_ig", n_steps=k, max_sigma=8.0)
    return compare(
        f"blur_ig ({k}, max_sigma 8)",
        lambda: ours.attribute(model, x, target=targets).numpy(),
        pair,
        "PAIR saliency BlurIG",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    patch_saliency()
    torch.manual_seed(0)
    model = load_demo_model().double().eval()
    images = generate_arrays(SyntheticConfig(n_samples=args.n_images, image_size=48, seed=1000))["image"]
    x = torch.from_numpy(images).double()
    targets = model(x).argmax(1)
    k = args.steps
    rows = [integrated_gradients_row(model, x, targets, k)]
    # Guided IG, bounded (the reference's defaults but k steps) and unbounded (its notebooks' setting)
    rows += [
        guided_ig_row(model, x, targets, k, fraction, max_dist) for fraction, max_dist in ((0.25, 0.02), (0.5, 1.0))
    ]
    rows.append(blur_ig_row(model, x, targets, k))

    print(f"{len(x)} synthetic 48x48 images, demo CNN in float64, {torch.get_num_threads()} CPU threads\n")
    head = f"{'method':45s} {'reference':28s} {'max |diff| / max |ref|':>22s} {'ours s':>8s} {'ref s':>8s}"
    print(f"{head} {'speed-up':>8s}")
    for label, ref, rel, t_ours, t_ref in rows:
        print(f"{label:45s} {ref:28s} {rel:22.2e} {t_ours:8.2f} {t_ref:8.2f} {t_ref / t_ours:7.1f}x")


if __name__ == "__main__":
    main()
