"""Checkpoints: the one place that saves, loads and rebuilds models from them.

A checkpoint is a dict saved with ``torch.save`` (loaded back with ``weights_only=True``):

- ``model_name``, ``model_config``: ``build_model(model_name, **model_config)`` rebuilds the model;
- ``state_dict``; ``task``; ``step``;
- ``feature_params``: kind -> the typed record of the feature stage the training data came from
  (:mod:`pipeline.feature_record`), so predict computes the same features for a new video;
- ``train_params``: the ``train`` section the run used (``size`` is the model input);
- for resuming: ``optimizer``, ``scheduler``, ``rng``.

``load_checkpoint`` also reads the official COMBO's detectron2 ``model_final.pth`` and converts it
(:mod:`train.official_combo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.atomic import atomic_path
from pipeline.torch_files import TorchFileError, load_torch_file
from train.models import build_model
from train.official_combo import (
    OfficialCheckpointError,
    is_official_combo_checkpoint,
    toolkit_checkpoint_from_official,
)

REQUIRED_KEYS = ("model_name", "model_config", "state_dict", "step")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or lacks what was asked of it."""


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` atomically (a crash never leaves a partial file)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (tensors and plain containers only); errors are one line naming the file."""
    path = Path(path)
    try:
        ckpt = load_torch_file(path, "checkpoint", map_location)
    except TorchFileError as exc:
        raise CheckpointError(str(exc)) from None
    if is_official_combo_checkpoint(ckpt):  # detectron2 model_final.pth of yannqi/COMBO-AVS
        try:
            return toolkit_checkpoint_from_official(ckpt, path)
        except OfficialCheckpointError as exc:
            raise CheckpointError(str(exc)) from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a model checkpoint of this toolkit (missing {missing})")
    return ckpt


def build_from_checkpoint(ckpt: dict[str, Any], source: str | Path = "checkpoint") -> nn.Module:
    """The model of ``ckpt`` with its trained weights (in training mode, on the CPU).

    Weights that do not fit the model as this version builds it (a checkpoint of another version)
    raise ``CheckpointError`` naming ``source`` and the first differing tensor."""
    model = build_model(ckpt["model_name"], **ckpt["model_config"])
    differences = _state_differences(model.state_dict(), ckpt["state_dict"])
    if differences:
        raise CheckpointError(
            f"{source}: weights do not fit {ckpt['model_name']} of this version ({differences[0]}; "
            f"{len(differences)} tensors differ): retrain, or use the version that wrote it"
        )
    model.load_state_dict(ckpt["state_dict"])
    return model


def _state_differences(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> list[str]:
    """Keys missing from ``found``, unexpected in it, or of another shape, one phrase each."""
    differences = [f"{key} missing" for key in expected if key not in found]
    differences += [f"{key} unexpected" for key in found if key not in expected]
    differences += [
        f"{key} {list(found[key].shape)} vs {list(tensor.shape)}"
        for key, tensor in expected.items()
        if key in found and tuple(getattr(found[key], "shape", ())) != tuple(tensor.shape)
    ]
    return differences


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest intermediate checkpoints of ``run_dir``."""
    found = sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))
    for old in found[: max(0, len(found) - keep)]:
        old.unlink(missing_ok=True)
