"""Checkpoints: the one place that saves, loads and rebuilds models from them.

A checkpoint is a dict saved with ``torch.save`` (loaded back with ``weights_only=True``):

- ``model_name``, ``model_config``: ``build_model(model_name, **model_config)`` rebuilds the model;
- ``state_dict``; ``task``; ``step``;
- ``feature_params``: kind -> the typed record of the feature stage the training data came from
  (:mod:`pipeline.feature_record`), so predict computes the same features for a new video;
- ``train_params``: the ``train`` section the run used (``size`` is the model input);
- for resuming: ``optimizer``, ``scheduler``, ``rng``;
- ``tensor_sha256``: the sha256 of every tensor above, written at save; :func:`load_checkpoint` refuses a
  file whose tensors do not match it (flipped bytes, an edited file) or whose weights are not finite.

``load_checkpoint`` also reads the official COMBO's detectron2 ``model_final.pth`` and converts it
(:mod:`train.official_combo`).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.atomic import atomic_path
from pipeline.torch_files import TorchFileError, load_torch_file
from train.models import build_model
from train.official_combo import (
    ModelFlags,
    OfficialCheckpointError,
    apply_model_flags,
    is_official_combo_checkpoint,
    toolkit_checkpoint_from_official,
)

REQUIRED_KEYS = ("model_name", "model_config", "state_dict", "step")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or lacks what was asked of it."""


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` atomically (a crash never leaves a partial file), with the sha256 of
    every tensor in it (``tensor_sha256``), which :func:`load_checkpoint` checks."""
    payload = {**payload, HASHES_KEY: tensor_hashes(payload)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", flags: ModelFlags | None = None
) -> dict[str, Any]:
    """Load a checkpoint safely (tensors and plain containers only) and verify it: every tensor matches
    the hash written at save, and every weight is finite. ``flags`` (``--model``, ``--task``,
    ``--num-classes``) choose the model of an official checkpoint and must agree with any checkpoint.
    Errors are one line naming the file."""
    path = Path(path)
    try:
        ckpt = load_torch_file(path, "checkpoint", map_location)
    except TorchFileError as exc:
        raise CheckpointError(str(exc)) from None
    if is_official_combo_checkpoint(ckpt):  # detectron2 model_final.pth of yannqi/COMBO-AVS
        try:
            ckpt = toolkit_checkpoint_from_official(ckpt, path, flags.model if flags else None)
        except OfficialCheckpointError as exc:
            raise CheckpointError(str(exc)) from None
        _verify_finite(ckpt, path)  # no hashes in a detectron2 file: the weights are checked still
    else:
        missing = [key for key in REQUIRED_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
        if missing:
            raise CheckpointError(f"{path}: not a model checkpoint of this toolkit (missing {missing})")
        _verify_tensors(ckpt, path)
    try:
        return apply_model_flags(ckpt, flags, path)
    except OfficialCheckpointError as exc:
        raise CheckpointError(str(exc)) from None


HASHES_KEY = "tensor_sha256"


def tensor_hashes(payload: Any, prefix: str = "") -> dict[str, str]:
    """``{"state_dict/<name>": sha256 of dtype, shape and bytes}`` for every tensor in ``payload`` (nested
    dicts, lists and tuples walked; the hashes themselves skipped)."""
    found: dict[str, str] = {}
    if isinstance(payload, torch.Tensor):
        tensor = payload.detach().cpu().contiguous()
        digest = hashlib.sha256(f"{tensor.dtype}{list(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        found[prefix] = digest.hexdigest()
    elif isinstance(payload, dict):
        for key, value in payload.items():
            if key != HASHES_KEY:
                found.update(tensor_hashes(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(payload, (list, tuple)):
        for i, value in enumerate(payload):
            found.update(tensor_hashes(value, f"{prefix}/{i}"))
    return found


def _verify_tensors(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose tensors differ from the hashes written at save (flipped bytes, an edited
    file) or whose weights are not all finite (a diverged run saved anyway)."""
    recorded = ckpt.get(HASHES_KEY)
    if not isinstance(recorded, dict):
        raise CheckpointError(
            f"{path}: no tensor hashes (written by an earlier version of the toolkit, or not by it): retrain"
        )
    actual = tensor_hashes(ckpt)
    changed = [name for name in sorted(set(recorded) | set(actual)) if recorded.get(name) != actual.get(name)]
    if changed:
        raise CheckpointError(
            f"{path}: {changed[0]} does not match the hash written at save ({len(changed)} tensors differ): "
            "the file is corrupt or was edited"
        )
    _verify_finite(ckpt, path)


def _verify_finite(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse weights that are not all finite (a diverged run saved anyway, an edited file)."""
    for name, tensor in ckpt["state_dict"].items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: {bad} weights of {name} are NaN or infinite: refusing to use them")


def build_from_checkpoint(ckpt: dict[str, Any], source: str | Path = "checkpoint") -> nn.Module:
    """The model of ``ckpt`` with its trained weights (in training mode, on the CPU).

    Weights that do not fit the model as this version builds it (a checkpoint of another version)
    raise ``CheckpointError`` naming ``source`` and the first differing tensor."""
    with warnings.catch_warnings():
        # The state dict below brings VGGish's weights (an official checkpoint names no VGGish file).
        warnings.filterwarnings("ignore", message="COMBO: VGGish built without weights")
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


# --- What a checkpoint says about how to run it (moved here from train/evaluate.py and train/predict.py:
# rules about the checkpoint's records, shared by evaluate, predict and the report) -------------------


def scoring_size(train_params: dict[str, Any], override: list[int] | tuple[int, ...] | None = None) -> list[int]:
    """The model input [H, W] a checkpoint is scored and run at: ``override`` (``evaluate.size``,
    ``avs predict --size``), else the checkpoint's ``train.inference_size``, else its training size."""
    return list(override or train_params.get("inference_size") or train_params["size"])


def feature_params_of(ckpt: dict[str, Any], path: str | Path, kinds: tuple[str, ...]) -> dict[str, Any]:
    """kind -> params dataclass of each feature stage in ``kinds``, rebuilt strictly from the
    checkpoint's records (a missing, incomplete or unknown record is an error naming ``path``). The params
    classes of ``kinds`` must be registered: the caller imports their modules (``pipeline.extraction``,
    ``pipeline.audio.features``, ``pipeline.proposals.config``), so that a stage that reads one record
    does not depend on the code of every feature stage."""
    from pipeline.feature_record import read_record

    records = ckpt.get("feature_params") or {}
    return {kind: read_record(kind, records.get(kind), f"{path}: feature_params") for kind in kinds}


def load_model(
    path: str | Path, device: torch.device | str = "cpu", flags: ModelFlags | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of checkpoint file ``path`` with its trained weights, in eval mode on ``device``, and the
    checkpoint dict (its records: ``train_params``, ``feature_params``, ``step``, ...); ``flags``: see
    :func:`load_checkpoint`."""
    ckpt = load_checkpoint(path, map_location="cpu", flags=flags)
    return build_from_checkpoint(ckpt, path).to(device).eval(), ckpt
