"""VGGish audio embedding network (Hershey et al. 2017) in the layout of the released PyTorch port.

State-dict keys: ``features.{0,3,6,8,11,13}.{weight,bias}`` (3x3 convs 64-M-128-M-256-256-M-512-512-M,
ReLU after each conv) and ``embeddings.{0,2,4}.{weight,bias}`` (Linear 12288->4096->4096->128,
ReLU after each; COMBO keeps the last ReLU, so embeddings are >= 0). The port file
``vggish-10086976.pth`` loads with ``strict=True``. No PCA / quantisation (COMBO uses neither).

Self-contained (torch only) so the data side can import it as well.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

VGGISH_EMBEDDING_DIM = 128
_CONV_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


class VGGish(nn.Module):
    """VGGish: log-mel examples [N,96,64] (or [N,1,96,64]) -> embeddings [N,128] (>= 0).

    The 512x6x4 conv output is flattened channels-last (H, W, C), as the TensorFlow original,
    so that the released weights give the reference embeddings.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for item in _CONV_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = int(item)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, VGGISH_EMBEDDING_DIM), nn.ReLU(inplace=True),
        )

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        if logmel.dim() == 3:
            logmel = logmel.unsqueeze(1)
        if tuple(logmel.shape[1:]) != (1, 96, 64):
            raise ValueError(f"VGGish expects log-mel examples [N,96,64], got {tuple(logmel.shape)}")
        x = self.features(logmel)  # [N,512,6,4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # channels-last flattening, [N,12288]
        return self.embeddings(x)


def load_vggish(path: str | Path | None = None) -> VGGish:
    """VGGish with the released port's weights from ``path`` (strict load); random init if None.

    Raises FileNotFoundError for a missing file, ValueError (naming the file) for an incompatible one.
    """
    model = VGGish()
    if path is None:
        return model
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGGish weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"VGGish weights file {path} cannot be read by torch.load: {error}") from error
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"VGGish weights file {path} does not match the VGGish layout: {error}") from error
    return model


__all__ = ["VGGISH_EMBEDDING_DIM", "VGGish", "load_vggish"]
