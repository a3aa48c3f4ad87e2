"""VGGish network (data side). The registered encoder and the PCA post-processor are in
:mod:`pipeline.audio.vggish_encoder`, which imports this module (and so torch) only when a VGGish is built.

State-dict layout is the one of the released PyTorch port (``vggish-10086976.pth``):
``features.{0,3,6,8,11,13}.{weight,bias}`` for the six 3x3 convolutions and
``embeddings.{0,2,4}.{weight,bias}`` for the three fully connected layers, so that
checkpoint loads with ``strict=True``. The final ReLU is kept (COMBO's choice), so
embeddings are >= 0.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.audio.encoders import AudioEncoderError
from pipeline.audio.logmel import EXAMPLE_FRAMES, NUM_MEL_BANDS, VGGISH_EMBEDDING_DIM
from pipeline.torch_files import TorchFileError, load_torch_file

EMBEDDING_DIM = VGGISH_EMBEDDING_DIM
# Convolution widths, "M" = 2x2 max-pool; indices inside ``features`` follow from this list.
_FEATURE_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
_FINAL_CHANNELS = 512
_FINAL_HEIGHT = EXAMPLE_FRAMES // 16  # four 2x2 pools: 96 -> 6
_FINAL_WIDTH = NUM_MEL_BANDS // 16  # 64 -> 4
_HIDDEN_DIM = 4096
RANDOM_INIT_SEED = 0


def build_vggish_features() -> nn.Sequential:
    """Convolutional trunk: [B,1,96,64] -> [B,512,6,4]."""
    layers: list[nn.Module] = []
    in_channels = 1
    for step in _FEATURE_PLAN:
        if step == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, int(step), kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=True))
            in_channels = int(step)
    return nn.Sequential(*layers)


def build_vggish_embeddings(embedding_dim: int = EMBEDDING_DIM) -> nn.Sequential:
    """Fully connected head: [B,12288] -> [B,embedding_dim], ReLU after every layer."""
    return nn.Sequential(
        nn.Linear(_FINAL_CHANNELS * _FINAL_HEIGHT * _FINAL_WIDTH, _HIDDEN_DIM),
        nn.ReLU(inplace=True),
        nn.Linear(_HIDDEN_DIM, _HIDDEN_DIM),
        nn.ReLU(inplace=True),
        nn.Linear(_HIDDEN_DIM, embedding_dim),
        nn.ReLU(inplace=True),
    )


class VGGish(nn.Module):
    """VGGish embedding network.

    forward: log-mel examples [B,1,96,64] (or [B,96,64]) float32 -> embeddings [B,128] (>= 0).
    """

    def __init__(self, features: nn.Module | None = None, embeddings: nn.Module | None = None) -> None:
        super().__init__()
        self.features = features if features is not None else build_vggish_features()
        self.embeddings = embeddings if embeddings is not None else build_vggish_embeddings()

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        if examples.dim() == 3:
            examples = examples.unsqueeze(1)
        if examples.dim() != 4 or tuple(examples.shape[1:]) != (1, EXAMPLE_FRAMES, NUM_MEL_BANDS):
            raise ValueError(
                f"VGGish expects examples [B,1,{EXAMPLE_FRAMES},{NUM_MEL_BANDS}], got {tuple(examples.shape)}"
            )
        maps = self.features(examples)
        # The TensorFlow original flattens channels-last; the released weights depend on that order.
        flat = maps.permute(0, 2, 3, 1).reshape(maps.shape[0], -1)
        return self.embeddings(flat)


def _torch_load(path: Path) -> object:
    try:
        return load_torch_file(path, "checkpoint")
    except TorchFileError as error:
        raise AudioEncoderError(str(error)) from None


def load_vggish(path: Path) -> VGGish:
    """VGGish with the weights of a checkpoint in the released port's layout (loaded with strict=True).

    The module is built on the meta device and the checkpoint tensors are assigned to it, so no
    time goes into a random initialisation that would be overwritten (~70 M parameters).
    """
    state = _torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise AudioEncoderError(f"{path}: expected a state_dict (mapping of tensors), got {type(state).__name__}")
    with torch.device("meta"):
        model = VGGish()
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise AudioEncoderError(
            f"{path}: not a VGGish state_dict in the released layout (features.*, embeddings.*): {error}"
        ) from error
    return model.float()


def random_init_vggish(seed: int = RANDOM_INIT_SEED) -> VGGish:
    """VGGish with PyTorch's default init drawn from a fixed seed (reproducible, leaves global RNG alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VGGish()
