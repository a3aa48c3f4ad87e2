"""Reading ``.pt``/``.pth`` files: the one safe ``torch.load`` of the project.

Files are loaded with ``weights_only=True`` (tensors and plain containers; never code). A missing,
truncated, corrupt or code-holding file raises :class:`TorchFileError` whose message is one short
line naming the file, rather than torch's multi-paragraph advice to turn the safety off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

MAX_REASON = 100  # characters of torch's own message kept


class TorchFileError(RuntimeError):
    """A weights or checkpoint file cannot be read safely."""


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    if text.startswith("Weights only load failed"):
        return "not a tensor-only torch file (corrupt, or it holds code objects)"
    first = text.splitlines()[0] if text else type(error).__name__
    return first if len(first) <= MAX_REASON else first[: MAX_REASON - 3] + "..."


def _numpy_globals() -> list[Any]:
    """What torch's weights-only unpickler needs to rebuild numpy arrays and scalars: data, never code."""
    import numpy as np

    multiarray = getattr(np, "_core", np.core).multiarray
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, *dtype_classes]


def load_torch_file(
    path: str | Path, what: str = "checkpoint", map_location: Any = "cpu", allow_numpy: bool = False
) -> Any:
    """``torch.load(path, weights_only=True)``; ``what`` names the file's role in errors.

    ``allow_numpy``: also rebuild numpy arrays and scalars (published checkpoints saved by older code,
    such as Semantic-SAM's, hold a few); still no code objects.
    """
    path = Path(path)
    if not path.is_file():
        raise TorchFileError(f"{path}: {what} file not found")
    try:
        if allow_numpy:
            with torch.serialization.safe_globals(_numpy_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for corrupt/foreign files
        raise TorchFileError(f"{path}: cannot read {what} ({_reason(error)})") from None
