"""VGGish network (data side) and its PCA post-processor.

State-dict layout is the one of the released PyTorch port (``vggish-10086976.pth``):
``features.{0,3,6,8,11,13}.{weight,bias}`` for the six 3x3 convolutions and
``embeddings.{0,2,4}.{weight,bias}`` for the three fully connected layers, so that
checkpoint loads with ``strict=True``. The final ReLU is kept (COMBO's choice), so
embeddings are >= 0.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.audio.encoders import AudioEncoderError, register_encoder
from pipeline.audio.logmel import EXAMPLE_FRAMES, NUM_MEL_BANDS, VGGISH_LOG_OFFSET
from pipeline.hashing import file_sha256
from pipeline.torch_files import TorchFileError, load_torch_file

EMBEDDING_DIM = 128
# Convolution widths, "M" = 2x2 max-pool; indices inside ``features`` follow from this list.
_FEATURE_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
_FINAL_CHANNELS = 512
_FINAL_HEIGHT = EXAMPLE_FRAMES // 16  # four 2x2 pools: 96 -> 6
_FINAL_WIDTH = NUM_MEL_BANDS // 16  # 64 -> 4
_HIDDEN_DIM = 4096
# The original post-processor clips PCA outputs to [-2, 2] before 8-bit quantisation.
PCA_CLIP_MIN = -2.0
PCA_CLIP_MAX = 2.0
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


@dataclass(frozen=True)
class VGGishPCA:
    """PCA + whitening + 8-bit quantisation of the original VGGish post-processor.

    apply: embeddings [B,128] -> float32 [B,128] holding integers 0..255.
    """

    eigen_vectors: np.ndarray  # [128,128], rows are output dimensions
    means: np.ndarray  # [128]

    @classmethod
    def from_file(cls, path: Path) -> VGGishPCA:
        """Read ``vggish_pca_params-970ea276.pth`` (torch) or ``vggish_pca_params.npz`` (TensorFlow release)."""
        path = Path(path)
        if path.suffix == ".npz":
            if not path.is_file():
                raise AudioEncoderError(f"{path}: PCA parameter file not found")
            with np.load(path) as npz:
                params = {key: npz[key] for key in npz.files}
        else:
            loaded = _torch_load(path)
            if not isinstance(loaded, dict):
                raise AudioEncoderError(f"{path}: expected a mapping with pca_eigen_vectors and pca_means")
            params = {key: np.asarray(value) for key, value in loaded.items()}
        missing = {"pca_eigen_vectors", "pca_means"} - params.keys()
        if missing:
            raise AudioEncoderError(f"{path}: PCA parameters lack {sorted(missing)}")
        vectors = np.asarray(params["pca_eigen_vectors"], dtype=np.float64)
        means = np.asarray(params["pca_means"], dtype=np.float64).reshape(-1)
        if vectors.shape != (EMBEDDING_DIM, EMBEDDING_DIM) or means.shape != (EMBEDDING_DIM,):
            raise AudioEncoderError(
                f"{path}: PCA shapes {vectors.shape} / {means.shape}, expected (128, 128) / (128,) or (128, 1)"
            )
        return cls(eigen_vectors=vectors, means=means)

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        projected = (np.asarray(embeddings, dtype=np.float64) - self.means) @ self.eigen_vectors.T
        clipped = np.clip(projected, PCA_CLIP_MIN, PCA_CLIP_MAX)
        scaled = (clipped - PCA_CLIP_MIN) * (255.0 / (PCA_CLIP_MAX - PCA_CLIP_MIN))
        # The original casts to uint8, i.e. truncates (values are >= 0, so floor).
        return np.floor(scaled).astype(np.float32)


def random_init_vggish(seed: int = RANDOM_INIT_SEED) -> VGGish:
    """VGGish with PyTorch's default init drawn from a fixed seed (reproducible, leaves global RNG alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VGGish()


@register_encoder("vggish")
class VGGishEncoder:
    """Registry entry ``vggish``: log-mel examples [N,96,64] -> float32 [N,128] (or PCA-quantised [N,128])."""

    dim = EMBEDDING_DIM
    log_offset = VGGISH_LOG_OFFSET

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        pca: bool = False,
        pca_checkpoint: str | Path | None = None,
        allow_random_init: bool = False,
        batch_size: int = 64,
        num_threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise AudioEncoderError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.num_threads = num_threads
        if checkpoint:
            checkpoint = Path(checkpoint)
            self.model = load_vggish(checkpoint)
            checkpoint_id = file_sha256(checkpoint)
        elif allow_random_init:
            self.model = random_init_vggish()
            checkpoint_id = "random-init"
            message = (
                "audio.encoder=vggish runs with RANDOM weights (audio.allow_random_init: true, no "
                "audio.checkpoint): embeddings carry no pretrained audio knowledge"
            )
            warnings.warn(message, stacklevel=2)
            print(f"WARNING: {message}", file=sys.stderr)
        else:
            raise AudioEncoderError(
                "audio.encoder=vggish needs audio.checkpoint (path to vggish-10086976.pth, the released "
                "PyTorch port); it is not available offline. Use audio.encoder: yamnet, or set "
                "audio.allow_random_init: true to run with random weights"
            )
        self.model.eval()
        self.pca: VGGishPCA | None = None
        pca_id = None
        if pca:
            if not pca_checkpoint:
                raise AudioEncoderError(
                    "audio.pca: true needs audio.pca_checkpoint (path to vggish_pca_params-970ea276.pth)"
                )
            self.pca = VGGishPCA.from_file(Path(pca_checkpoint))
            pca_id = file_sha256(Path(pca_checkpoint))
        self.provenance: dict[str, str] = {
            "encoder": "vggish",
            "checkpoint_sha256": checkpoint_id,
            "pca": "none" if pca_id is None else f"sha256:{pca_id}",
            "embedding_dim": str(self.dim),
            "log_offset": repr(self.log_offset),
        }

    @torch.inference_mode()
    def encode(self, examples: np.ndarray) -> np.ndarray:
        """examples: float [N,96,64] log-mel -> float32 [N,128], run in batches of ``batch_size``."""
        examples = np.asarray(examples, dtype=np.float32)
        if examples.ndim != 3 or examples.shape[1:] != (EXAMPLE_FRAMES, NUM_MEL_BANDS):
            raise ValueError(f"expected examples [N,{EXAMPLE_FRAMES},{NUM_MEL_BANDS}], got {examples.shape}")
        previous_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            outputs = [
                self.model(torch.from_numpy(examples[start : start + self.batch_size])).numpy()
                for start in range(0, examples.shape[0], self.batch_size)
            ]
        finally:
            torch.set_num_threads(previous_threads)
        embeddings = np.concatenate(outputs, axis=0) if outputs else np.zeros((0, self.dim), np.float32)
        if self.pca is not None:
            embeddings = self.pca.apply(embeddings)
        return embeddings.astype(np.float32, copy=False)
