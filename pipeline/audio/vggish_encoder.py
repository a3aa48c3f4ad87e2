"""The ``vggish`` audio encoder (registry entry) and VGGish's PCA post-processor.

This module imports no torch: the audio stage lists the encoders (params validation) whatever encoder it
runs, and importing torch costs ~3 s and ~0.9 GB of peak memory with a CUDA build of torch. The network
(:mod:`pipeline.audio.vggish`) and torch are imported when a VGGish encoder is built.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio.encoders import AudioEncoderError, register_encoder
from pipeline.audio.logmel import EXAMPLE_FRAMES, NUM_MEL_BANDS, VGGISH_EMBEDDING_DIM, VGGISH_LOG_OFFSET
from pipeline.hashing import file_sha256

EMBEDDING_DIM = VGGISH_EMBEDDING_DIM
# The original post-processor clips PCA outputs to [-2, 2] before 8-bit quantisation.
PCA_CLIP_MIN = -2.0
PCA_CLIP_MAX = 2.0


def _torch_load(path: Path) -> object:
    from pipeline.torch_files import TorchFileError, load_torch_file  # torch: only for .pth parameter files

    try:
        return load_torch_file(path, "checkpoint")
    except TorchFileError as error:
        raise AudioEncoderError(str(error)) from None


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
        from pipeline.audio.vggish import load_vggish, random_init_vggish

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

    def encode(self, examples: np.ndarray) -> np.ndarray:
        """examples: float [N,96,64] log-mel -> float32 [N,128], run in batches of ``batch_size``."""
        import torch

        examples = np.asarray(examples, dtype=np.float32)
        if examples.ndim != 3 or examples.shape[1:] != (EXAMPLE_FRAMES, NUM_MEL_BANDS):
            raise ValueError(f"expected examples [N,{EXAMPLE_FRAMES},{NUM_MEL_BANDS}], got {examples.shape}")
        previous_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
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
