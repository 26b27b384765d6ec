"""Model parameter randomisation for the sanity checks of Adebayo et al. (NeurIPS 2018).

The layers of a model are its modules with parameters, in the order a forward pass calls them.
A layer's new weights come from the layer's own initialisation (``reset_parameters``, e.g. the
Kaiming-uniform of ``nn.Conv2d``) under a seed derived from the run seed and the module's name,
drawn on the CPU, so the same seed gives the same weights on any device, in either mode, at any
step. Only parameters are re-initialised: buffers keep their trained values, so a BatchNorm's
running mean and variance stay those of the trained model and its affine parameters become its own
initialisation (weight 1, bias 0). This is what the paper's code does (it re-initialises the
TF-slim *trainable* variables of a block; moving statistics are not trainable), and it keeps the
randomised model's outputs finite: the normalisation stays a fixed per-channel affine map.

Randomisation runs top-down (from the logits): *cascading* step ``i`` randomises the top ``i``
layers, *independent* step ``i`` only the ``i``-th layer from the top; step 0 is the trained model.

References: Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
NeurIPS 2018 (code: github.com/adebayoj/sanity_checks_saliency, ``randomize_inceptionv3.py``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import Registry

# which layers (positions in the top-down order) are random at step i >= 1
Schedule = Callable[[int], range]
MODES: Registry[Schedule] = Registry("randomisation mode")
MODES.register("cascading")(lambda step: range(0, step))
MODES.register("independent")(lambda step: range(step - 1, step))

GRANULARITIES: Registry[Callable[[list[_Call]], list[Layer]]] = Registry("layer granularity")
_KERNELS = (nn.modules.conv._ConvNd, nn.Linear)  # what a BatchNorm is folded into by the "layer" granularity
_NORMS = (nn.modules.batchnorm._NormBase,)  # BatchNorm*d, InstanceNorm*d, SyncBatchNorm


@dataclass(frozen=True)
class Layer:
    """One unit of randomisation: ``name`` (shown in reports) and the names of its modules."""

    name: str
    modules: tuple[str, ...]


@dataclass
class _Call:
    """A parameterised module's first call in the traced forward pass (its first input and output
    are kept alive for the trace, so identity checks cannot be fooled by a reused id)."""

    name: str
    module: nn.Module
    input: Any
    output: Any


def list_layers(model: nn.Module, example: torch.Tensor, granularity: str = "layer") -> list[Layer]:
    """The layers of ``model`` in forward order (bottom first), found by tracing ``example``
    ``(1, ...)`` once with forward hooks on every module that has parameters of its own.

    ``granularity``: ``layer`` (default) -- each such module, except that a BatchNorm fed
    directly by a convolution or linear layer belongs to that layer (a TF-slim ``conv2d`` scope
    of the paper's Inception v3 holds its BatchNorm too); ``module`` -- every such module on its
    own; ``block`` -- the network's top-level children (below the wrappers every layer shares,
    e.g. the pixel-space wrapper's ``net``; a BatchNorm stays with its convolution as in
    ``layer``), as the paper's Inception v3 blocks (``Mixed_7c``): for big models.
    Modules the forward pass never calls are left out (randomising them changes no map); a model
    hooks cannot trace (TorchScript) falls back to the registration order.
    """
    calls = _trace(model, example)
    if not calls:
        raise ValueError("the model has no modules with parameters: there is nothing to randomise")
    return GRANULARITIES.get(granularity)(calls)


def _trace(model: nn.Module, example: torch.Tensor) -> list[_Call]:
    # ordered by when each call *starts* (pre-hooks): a parent with parameters of its own (a ViT's
    # class token and position embeddings) comes before its children, at the bottom where it acts
    owners = [(name, m) for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    calls: dict[str, _Call] = {}

    def before(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple) -> None:
            if name not in calls:
                calls[name] = _Call(name, module, inputs[0] if inputs else None, None)

        return record

    def after(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple, output: Any) -> None:
            if calls[name].output is None:
                calls[name].output = output

        return record

    handles = []
    try:
        for name, module in owners:
            try:
                handles.append(module.register_forward_pre_hook(before(name)))
                handles.append(module.register_forward_hook(after(name)))
            except RuntimeError:  # scripted modules take no Python hooks
                break
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        return [_Call(name, m, None, None) for name, m in owners]
    return list(calls.values())


def _label(name: str) -> str:
    return name or "<model>"  # the root module's own parameters


@GRANULARITIES.register("module")
def _per_module(calls: list[_Call]) -> list[Layer]:
    return [Layer(_label(c.name), (c.name,)) for c in calls]


@GRANULARITIES.register("layer")
def _per_layer(calls: list[_Call]) -> list[Layer]:
    layers: list[Layer] = []
    for i, c in enumerate(calls):
        prev = calls[i - 1] if i else None
        fed = prev is not None and isinstance(prev.module, _KERNELS) and c.input is prev.output
        if isinstance(c.module, _NORMS) and fed and layers:
            layers[-1] = Layer(layers[-1].name, (*layers[-1].modules, c.name))
        else:
            layers.append(Layer(_label(c.name), (c.name,)))
    return layers


@GRANULARITIES.register("block")
def _per_block(calls: list[_Call]) -> list[Layer]:
    layers = _per_layer(calls)  # a block's BatchNorm stays with its convolution even across blocks
    parts = [layer.name.split(".") for layer in layers]
    # leading name components every nested module shares (wrappers), never a whole name; a parent
    # with parameters of its own (a ViT's embeddings on the model itself) becomes a block of its own
    nested = [p for p in parts if not any(len(q) > len(p) and q[: len(p)] == p for q in parts)]
    shared = 0
    while all(len(p) > shared + 1 for p in nested) and len({p[shared] for p in nested}) == 1:
        shared += 1
    blocks: dict[str, list[str]] = {}
    for layer, p in zip(layers, parts, strict=True):
        blocks.setdefault(".".join(p[: shared + 1]), []).extend(layer.modules)
    return [Layer(name, tuple(modules)) for name, modules in blocks.items()]


def layer_seed(seed: int, module: str) -> int:
    """A 63-bit seed for ``module``'s new weights from the run ``seed`` and the module's name."""
    digest = hashlib.blake2b(f"{int(seed)}/{module}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def fresh_parameters(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """``name -> tensor``: new values of ``module``'s own parameters (not its children's), drawn on
    the CPU with ``seed``: its ``reset_parameters`` where it has one, else a normal draw with each
    tensor's own standard deviation (its mean magnitude for a one-element or constant tensor)."""
    clone = copy.deepcopy(module).to("cpu")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        reset = getattr(clone, "reset_parameters", None)
        if callable(reset):
            reset()
        else:
            g = torch.Generator().manual_seed(seed)
            for p in clone.parameters(recurse=False):
                scale = float(p.float().std()) if p.numel() > 1 else 0.0
                scale = scale or float(p.float().abs().mean()) or 1.0
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * scale)
    return {name: p.detach() for name, p in clone.named_parameters(recurse=False)}


class Randomizer:
    """Randomises layers of ``model`` in place and puts the trained parameters back.

    ``with Randomizer(model, seed) as r: r.set(random)`` makes exactly the layers in ``random``
    random (re-initialised as :func:`fresh_parameters` with :func:`layer_seed`) and every other
    layer trained; on exit every parameter is trained again, also after an exception.
    """

    def __init__(self, model: nn.Module, seed: int) -> None:
        self.model, self.seed = model, int(seed)
        self._trained: dict[str, dict[str, torch.Tensor]] = {}
        self._random: set[Layer] = set()

    def __enter__(self) -> Randomizer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.set(())

    def set(self, random: Sequence[Layer]) -> None:
        target = set(random)
        for layer in self._random - target:
            for name in layer.modules:
                self._copy(name, self._trained[name])
        for layer in target - self._random:
            for name in layer.modules:
                module = self.model.get_submodule(name)
                if name not in self._trained:
                    self._trained[name] = {n: p.detach().clone() for n, p in module.named_parameters(recurse=False)}
                self._copy(name, fresh_parameters(module, layer_seed(self.seed, name)))
        self._random = target

    def _copy(self, name: str, values: dict[str, torch.Tensor]) -> None:
        module = self.model.get_submodule(name)
        with torch.no_grad():
            for pname, p in module.named_parameters(recurse=False):
                p.copy_(values[pname])  # in place: device, dtype and memory format stay the model's


def steps(layers: Sequence[Layer], mode: str) -> list[list[Layer]]:
    """The random layers at each step ``1..L`` of ``mode`` (``layers`` bottom first; randomisation
    goes top-down): cascading ``[[top], [top, next], ...]``, independent ``[[top], [next], ...]``."""
    schedule, top_down = MODES.get(mode), list(layers)[::-1]
    return [[top_down[i] for i in schedule(step)] for step in range(1, len(top_down) + 1)]


def randomizations(model: nn.Module, layers: Sequence[Layer], mode: str, seed: int) -> Iterator[tuple[int, Layer]]:
    """Randomise ``model`` in place through the steps of ``mode``, yielding ``(step, the step's
    layer)`` after each (step 1 first); the trained parameters are back when it ends or is closed."""
    with Randomizer(model, seed) as randomizer:
        top_down = list(layers)[::-1]
        for step, random in enumerate(steps(layers, mode), 1):
            randomizer.set(random)
            yield step, top_down[step - 1]


def randomized_copy(model: nn.Module, layers: Sequence[Layer], mode: str, step: int, seed: int) -> nn.Module:
    """A copy of ``model`` as it is at ``step`` of ``mode`` (0: trained); ``model`` is unchanged."""
    out = copy.deepcopy(model)
    if step:
        Randomizer(out, seed).set(steps(layers, mode)[step - 1])
    return out
