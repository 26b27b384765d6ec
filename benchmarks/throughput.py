"""Throughput of the path methods against the hardware limit and the reference tools, in one process.

For each model (ResNet-50 and VGG-16 at 224 with random weights, the demo CNN at 48) on one device:

- the limit: raw input-gradient throughput (images x steps per second of forward + backward) in
  eager fp32, eager bf16 and, on CUDA, ``torch.compile`` bf16 — divided by the step count it is the
  best any ``steps``-step path method can do;
- pathatlas ``integrated_gradients``, ``guided_ig``, ``pattern_guided_ig``, ``ig2``, ``blur_ig`` and
  ``smoothgrad(integrated_gradients)``; on CUDA (or with ``--compile``) also IG and Guided IG with
  the engine compiled, in bf16 and channels-last (timed after a warm-up call that compiles);
- captum's ``IntegratedGradients`` and PAIR saliency's ``GuidedIG`` on the same model and inputs;

printing images/s, the ratio to the limit and to the reference, peak device memory and, for IG,
the median completeness residual in fp32 and bf16.

    .venv/bin/python -m benchmarks.throughput                  # CUDA if present, else a CPU-sized run
    .venv/bin/python -m benchmarks.throughput --models demo --n-images 16 --steps 50
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchvision

from benchmarks.reference_shims import patch_saliency
from pathatlas.attribution import EngineOptions, GradientEngine, get_method
from pathatlas.attribution.models.demo_cnn import load_demo_model
from pathatlas.attribution.models.wrapper import PixelSpaceModel
from pathatlas.attribution.patterns import accumulate, kernel_layers, solve
from pathatlas.attribution.references import References

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def build(name: str) -> tuple[torch.nn.Module, int]:
    if name == "demo":
        return load_demo_model(), 48
    torch.manual_seed(0)
    return PixelSpaceModel(getattr(torchvision.models, name)(weights=None), *IMAGENET), 224


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1) -> tuple[Any, float]:
    """Best wall time of ``repeat`` runs (after one warm-up when repeating)."""
    if repeat > 1:
        fn()
    best, out = float("inf"), None
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return out, best


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water mark (CPU)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def raw_gradient_rate(model: torch.nn.Module, x: torch.Tensor, precision: str, compile_: bool, batch: int) -> float:
    """Input gradients per second on batches of ``batch`` points: the device's limit."""
    engine = GradientEngine(model, EngineOptions(batch_size=batch, precision=precision, compile=compile_))
    pts = x[:1].expand(batch, *x.shape[1:]).contiguous()
    target = torch.zeros(batch, dtype=torch.long, device=x.device)
    _, seconds = timed(lambda: engine.gradients(pts, target), x.device, repeat=3)
    return batch / seconds


Row = tuple[str, float, float | None, float, str]  # label, img/s, x reference, peak MB, note
FAST = {"precision": "bf16", "compile": True, "channels_last": True}


class Bench:
    """One model on one device: its inputs, and timed runs of pathatlas methods on them."""

    def __init__(self, model_name: str, args: argparse.Namespace, device: torch.device) -> None:
        cuda = device.type == "cuda"
        model, size = build(model_name)
        self.model, self.size, self.device = model.to(device).eval(), size, device
        self.big = model_name != "demo"
        self.n = args.n_images or (256 if cuda else (8 if not self.big else 2))
        self.batch = args.batch or (256 if cuda and self.big else 512 if cuda else 64)
        self.generator = torch.Generator().manual_seed(0)
        self.x = torch.rand(self.n, 3, size, size, generator=self.generator).to(device)
        self.target = torch.zeros(self.n, dtype=torch.long, device=device)
        self.repeat = args.repeat or (1 if self.big and not cuda else 2)
        self.compiled = cuda or args.compile
        self.steps = args.steps

    def ours(self, method: str, settings: dict, engine_opts: dict | None = None, **kw: Any) -> tuple[float, Any, float]:
        """``(images/s, the Attribution, peak MB)`` of one method (the engine works on its own view
        of the model, so compiled or channels-last rows leave the shared model as it was)."""
        opts = EngineOptions(batch_size=self.batch, **(engine_opts or {}))
        engine = GradientEngine(self.model, opts)
        m = get_method(method, **settings)
        reset_peak(self.device)
        repeat = max(self.repeat, 2 if opts.compile else 1)
        result, seconds = timed(lambda: m.explain(engine, self.x, self.target, **kw), self.device, repeat=repeat)
        return self.n / seconds, result, peak_mb(self.device)

    def limit_rows(self) -> tuple[list[Row], float]:
        """The raw input-gradient rate per precision, and the best of them per image at ``steps`` steps."""
        rows, limits = [], {}
        for label, precision, comp in (
            ("eager fp32", "fp32", False),
            ("eager bf16", "bf16", False),
            ("compiled bf16", "bf16", True),
        ):
            if comp and self.device.type != "cuda":
                continue
            rate = raw_gradient_rate(self.model, self.x, precision, comp, self.batch)
            limits[label] = rate / self.steps
            note = f"{rate:.0f} gradients/s -> limit {rate / self.steps:.1f} img/s at {self.steps} steps"
            rows.append((f"raw input gradients, {label}", rate, None, peak_mb(self.device), note))
        return rows, max(limits.values())

    def ig_rows(self, captum_ig: Any) -> tuple[list[Row], float]:
        """captum's IG and ours (fp32, bf16, compiled); returns the rows and our fp32 rate."""
        k = self.steps
        ig_rate, ig, ig_mb = self.ours("integrated_gradients", {"n_steps": k})
        bf16_rate, ig_bf16, bf16_mb = self.ours("integrated_gradients", {"n_steps": k}, {"precision": "bf16"})
        captum = captum_ig(self.model)
        reset_peak(self.device)
        run = lambda: captum.attribute(self.x, target=self.target, n_steps=k, internal_batch_size=self.batch)  # noqa: E731
        _, captum_s = timed(run, self.device, self.repeat)
        captum_rate = self.n / captum_s
        res32 = float(ig.diagnostics["relative_residual"].median())
        res16 = float(ig_bf16.diagnostics["relative_residual"].median())
        rows: list[Row] = [
            ("captum IntegratedGradients", captum_rate, None, peak_mb(self.device), "reference"),
            (
                "integrated_gradients fp32",
                ig_rate,
                ig_rate / captum_rate,
                ig_mb,
                f"completeness |res|/|Δf| median {100 * res32:.2f} %",
            ),
            (
                "integrated_gradients bf16",
                bf16_rate,
                bf16_rate / captum_rate,
                bf16_mb,
                f"completeness median {100 * res16:.2f} %",
            ),
        ]
        if self.compiled:
            rate, result, mb = self.ours("integrated_gradients", {"n_steps": k}, FAST)
            res = float(result.diagnostics["relative_residual"].median())
            note = f"channels-last; completeness median {100 * res:.2f} %"
            rows.append(("integrated_gradients bf16 compiled", rate, rate / captum_rate, mb, note))
        return rows, ig_rate

    def guided_ig_rows(self, saliency: Any, n_pair: int) -> list[Row]:
        """PAIR saliency's GuidedIG (one image at a time, as it runs) and ours."""
        xp, model, device = self.x[:n_pair].detach().cpu().numpy(), self.model, self.device

        def pair_grad(batch_x: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict:
            z = torch.as_tensor(batch_x, dtype=torch.float32, device=device).requires_grad_(True)
            (gz,) = torch.autograd.grad(model(z)[:, 0].sum(), z)
            return {saliency.INPUT_OUTPUT_GRADIENTS: gz.detach().cpu().numpy()}

        def pair() -> list:
            return [
                saliency.GuidedIG().GetMask(xp[i], pair_grad, x_steps=self.steps, x_baseline=np.zeros_like(xp[i]))
                for i in range(n_pair)
            ]

        reset_peak(device)
        _, pair_s = timed(pair, device)
        pair_rate = n_pair / pair_s
        note = f"reference, {n_pair} images one at a time"
        rows: list[Row] = [("PAIR saliency GuidedIG", pair_rate, None, peak_mb(device), note)]
        rate, _, mb = self.ours("guided_ig", {"n_steps": self.steps})
        rows.append(("guided_ig", rate, rate / pair_rate, mb, ""))
        if self.compiled:
            rate, _, mb = self.ours("guided_ig", {"n_steps": self.steps}, FAST)
            rows.append(("guided_ig bf16 compiled", rate, rate / pair_rate, mb, "channels-last"))
        return rows

    def other_rows(self, ig_rate: float) -> list[Row]:
        """PGIG (patterns learned on the spot), IG², Blur IG and SmoothGrad over IG."""
        k, size, device = self.steps, self.size, self.device
        layers = kernel_layers(self.model, self.x[:1])
        patterns = solve(accumulate(self.model, layers, [self.x[: min(self.n, 8)]]), layers)
        rows: list[Row] = []
        rate, _, mb = self.ours("pattern_guided_ig", {"n_steps": k, "patterns": patterns})
        rows.append(("pattern_guided_ig", rate, rate / ig_rate, mb, "x ref = vs our IG (target: >= 1/1.5)"))
        images = torch.rand(8, 3, size, size, generator=self.generator).to(device)
        pool = References(images, torch.arange(8, device=device) + 1)
        rate, _, mb = self.ours("ig2", {"n_steps": k, "n_references": 1}, references=pool)
        rows.append(("ig2 (1 reference)", rate, rate / ig_rate, mb, "x ref = vs our IG (target: >= 1/2.2)"))
        rate, _, mb = self.ours("blur_ig", {"n_steps": k, "max_sigma": 50.0 if self.big else 8.0})
        rows.append(("blur_ig", rate, None, mb, ""))
        rate, _, mb = self.ours("smoothgrad(integrated_gradients)", {"n_samples": 4, "base_settings": {"n_steps": k}})
        rows.append(("smoothgrad(integrated_gradients) x4", rate, None, mb, f"{4 * k} gradients per image"))
        return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma list of demo, resnet50, vgg16")
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=None, help="points per forward/backward (engine batch_size)")
    parser.add_argument("--pair-images", type=int, default=None, help="images for PAIR's one-image-at-a-time GuidedIG")
    parser.add_argument("--compile", action="store_true", help="add the compiled rows on CPU too (slow to compile)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per row after one warm-up, best kept (default 2; 1 without warm-up for "
        "ResNet-50/VGG-16 on a CPU); PAIR's rows always run once",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    models = (args.models or ("resnet50,vgg16,demo" if cuda else "demo,resnet50")).split(",")
    patch_saliency()
    import saliency.core as saliency
    from captum.attr import IntegratedGradients as CaptumIG

    cpu = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(device) if cuda else cpu
    print(f"device: {name}; torch {torch.__version__}; {args.steps} steps\n")
    header = f"{'model':9s} {'method':34s} {'img/s':>9s} {'x limit':>8s} {'x ref':>8s} {'peak MB':>9s}  note"
    print(header)
    print("-" * len(header))
    for model_name in models:
        bench = Bench(model_name, args, device)
        rows, limit = bench.limit_rows()
        ig, ig_rate = bench.ig_rows(CaptumIG)
        rows += ig + bench.guided_ig_rows(saliency, args.pair_images or (2 if bench.big else 4))
        rows += bench.other_rows(ig_rate)
        for label, rate, ref_ratio, mb, note in rows:
            ratio = "" if label.startswith("raw") else f"{rate / limit:8.2f}"
            ref = "" if ref_ratio is None else f"{ref_ratio:8.2f}"
            print(f"{model_name:9s} {label:34s} {rate:9.2f} {ratio:>8s} {ref:>8s} {mb:9.0f}  {note}")
        print()


if __name__ == "__main__":
    main()
