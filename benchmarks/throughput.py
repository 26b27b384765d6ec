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
from typing import Any, Callable

import numpy as np
import torch
import torchvision

from attribution import EngineOptions, GradientEngine, get_method
from attribution.models.demo_cnn import load_demo_model
from attribution.models.wrapper import PixelSpaceModel
from attribution.patterns import accumulate, kernel_layers, solve
from attribution.references import References
from benchmarks.reference_shims import patch_saliency

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma list of demo, resnet50, vgg16")
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=None, help="points per forward/backward (engine batch_size)")
    parser.add_argument("--pair-images", type=int, default=None, help="images for PAIR's one-image-at-a-time GuidedIG")
    parser.add_argument("--compile", action="store_true", help="add the compiled rows on CPU too (slow to compile)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per row after one warm-up, best kept (default 2; 1 without warm-up for "
                             "ResNet-50/VGG-16 on a CPU); PAIR's rows always run once")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    models = (args.models or ("resnet50,vgg16,demo" if cuda else "demo,resnet50")).split(",")
    k = args.steps
    patch_saliency()
    import saliency.core as saliency
    from captum.attr import IntegratedGradients as CaptumIG

    name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {k} steps\n")
    header = f"{'model':9s} {'method':34s} {'img/s':>9s} {'x limit':>8s} {'x ref':>8s} {'peak MB':>9s}  note"
    print(header)
    print("-" * len(header))
    for model_name in models:
        model, size = build(model_name)
        model = model.to(device).eval()
        big = model_name != "demo"
        n = args.n_images or (256 if cuda else (8 if not big else 2))
        batch = args.batch or (256 if cuda and big else 512 if cuda else 64)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, 3, size, size, generator=g).to(device)
        target = torch.zeros(n, dtype=torch.long, device=device)
        rows: list[tuple[str, float, float | None, float, str]] = []
        repeat = args.repeat or (1 if big and not cuda else 2)

        limits = {}
        for label, precision, comp in (("eager fp32", "fp32", False), ("eager bf16", "bf16", False), ("compiled bf16", "bf16", True)):
            if comp and not cuda:
                continue
            rate = raw_gradient_rate(model, x, precision, comp, batch)
            limits[label] = rate / k
            rows.append((f"raw input gradients, {label}", rate, None, peak_mb(device),
                         f"{rate:.0f} gradients/s -> limit {rate / k:.1f} img/s at {k} steps"))
        limit = max(limits.values())

        def ours(method: str, settings: dict, engine_opts: dict | None = None, **kw: Any) -> tuple[float, Any, float]:
            opts = EngineOptions(batch_size=batch, **(engine_opts or {}))
            engine = GradientEngine(model, opts)
            m = get_method(method, **settings)
            reset_peak(device)
            result, seconds = timed(lambda: m.explain(engine, x, target, **kw), device, repeat=max(repeat, 2 if opts.compile else 1))
            if opts.channels_last:  # the engine converted the shared model; the other rows run it as built
                model.to(memory_format=torch.contiguous_format)
            return n / seconds, result, peak_mb(device)

        ig_rate, ig, ig_mb = ours("integrated_gradients", {"n_steps": k})
        ig_bf16_rate, ig_bf16, bf16_mb = ours("integrated_gradients", {"n_steps": k}, {"precision": "bf16"})
        captum = CaptumIG(model)
        reset_peak(device)
        _, captum_s = timed(lambda: captum.attribute(x, target=target, n_steps=k, internal_batch_size=batch), device, repeat)
        captum_rate = n / captum_s
        res32 = float(ig.diagnostics["relative_residual"].median())
        res16 = float(ig_bf16.diagnostics["relative_residual"].median())
        rows.append(("captum IntegratedGradients", captum_rate, None, peak_mb(device), "reference"))
        rows.append(("integrated_gradients fp32", ig_rate, ig_rate / captum_rate, ig_mb,
                     f"completeness |res|/|Δf| median {100 * res32:.2f} %"))
        rows.append(("integrated_gradients bf16", ig_bf16_rate, ig_bf16_rate / captum_rate, bf16_mb,
                     f"completeness median {100 * res16:.2f} %"))
        fast = {"precision": "bf16", "compile": True, "channels_last": True}
        compiled = cuda or args.compile
        if compiled:
            rate, result, mb = ours("integrated_gradients", {"n_steps": k}, fast)
            res = float(result.diagnostics["relative_residual"].median())
            rows.append(("integrated_gradients bf16 compiled", rate, rate / captum_rate, mb,
                         f"channels-last; completeness median {100 * res:.2f} %"))

        n_pair = args.pair_images or (2 if big else 4)
        xp = x[:n_pair].detach().cpu().numpy()

        def pair_grad(batch_x: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict:
            z = torch.as_tensor(batch_x, dtype=torch.float32, device=device).requires_grad_(True)
            (gz,) = torch.autograd.grad(model(z)[:, 0].sum(), z)
            return {saliency.INPUT_OUTPUT_GRADIENTS: gz.detach().cpu().numpy()}

        reset_peak(device)
        _, pair_s = timed(lambda: [saliency.GuidedIG().GetMask(xp[i], pair_grad, x_steps=k, x_baseline=np.zeros_like(xp[i]))
                                   for i in range(n_pair)], device)
        pair_rate = n_pair / pair_s
        rows.append(("PAIR saliency GuidedIG", pair_rate, None, peak_mb(device), f"reference, {n_pair} images one at a time"))
        gig_rate, _, mb = ours("guided_ig", {"n_steps": k})
        rows.append(("guided_ig", gig_rate, gig_rate / pair_rate, mb, ""))
        if compiled:
            rate, _, mb = ours("guided_ig", {"n_steps": k}, fast)
            rows.append(("guided_ig bf16 compiled", rate, rate / pair_rate, mb, "channels-last"))

        layers = kernel_layers(model, x[:1])
        patterns = solve(accumulate(model, layers, [x[: min(n, 8)]]), layers)
        pgig_rate, _, mb = ours("pattern_guided_ig", {"n_steps": k, "patterns": patterns})
        rows.append(("pattern_guided_ig", pgig_rate, pgig_rate / ig_rate, mb, "x ref = vs our IG (target: >= 1/1.5)"))
        pool = References(torch.rand(8, 3, size, size, generator=g).to(device), torch.arange(8, device=device) + 1)
        ig2_rate, _, mb = ours("ig2", {"n_steps": k, "n_references": 1}, references=pool)
        rows.append(("ig2 (1 reference)", ig2_rate, ig2_rate / ig_rate, mb, "x ref = vs our IG (target: >= 1/2.2)"))
        blur_rate, _, mb = ours("blur_ig", {"n_steps": k, "max_sigma": 50.0 if big else 8.0})
        rows.append(("blur_ig", blur_rate, None, mb, ""))
        sg_rate, _, mb = ours("smoothgrad(integrated_gradients)", {"n_samples": 4, "base_settings": {"n_steps": k}})
        rows.append(("smoothgrad(integrated_gradients) x4", sg_rate, None, mb, f"{4 * k} gradients per image"))

        for label, rate, ref_ratio, mb, note in rows:
            ratio = "" if label.startswith("raw") else f"{rate / limit:8.2f}"
            ref = "" if ref_ratio is None else f"{ref_ratio:8.2f}"
            print(f"{model_name:9s} {label:34s} {rate:9.2f} {ratio:>8s} {ref:>8s} {mb:9.0f}  {note}")
        print()


if __name__ == "__main__":
    main()
