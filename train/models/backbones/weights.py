"""Reading pretrained backbone files in the formats their users hold.

* PyTorch state dicts (``.pth`` / ``.pt``: torchvision, timm, the official PVT-v2 and Swin releases),
  read by the one safe ``torch.load`` (``weights_only``).
* detectron2 pickles (``.pkl``), read by :class:`ArrayUnpickler`, which builds numpy arrays and plain
  containers only and refuses every other object (a pickle can otherwise run code when loaded):

  - detectron2 model-zoo format ``{"model": {name: ndarray}, "__author__": ..., "matching_heuristics": True}``,
    e.g. COMBO's ``R-50.pkl`` (torchvision ResNet-50 renamed by detectron2's converter: ``stem.conv1``,
    ``res2.0.conv1.norm``, ``res2.0.shortcut``) and ``d2_pvt_v2_b5.pkl`` (COMBO's
    ``avs_tools/convert_pvt_model_to_d2.py``: the official PVT-v2 names, unchanged, as arrays);
  - Caffe2 / Detectron1 format: ``{name: ndarray}`` at the top level (ImageNet models) or under
    ``"blobs"`` (detection models), with Caffe2 names (``res2_0_branch2a_w``, ``res_conv1_bn_s``).

:func:`read_weights_file` returns ``(state, layout)``: ``layout`` is ``"torch"``, ``"detectron2"`` or
``"caffe2"``, so that each backbone family can rename what its layout needs
(``Backbone.adapt_pretrained(state, layout)``).
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.torch_files import TorchFileError, load_torch_file

PICKLE_SUFFIXES = (".pkl", ".pickle")

# The globals a pickle of numpy arrays in dicts needs (numpy 1 and 2 module names), nothing else.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }
)


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays, numpy scalars and plain containers only.

    Any other global (``os.system``, ``builtins.eval``, a class with a ``__reduce__`` ...) raises
    ``pickle.UnpicklingError`` before it is looked up, so nothing in the file is ever executed.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays are accepted)")
        return super().find_class(module, name)


def load_array_pickle(path: Path) -> Any:
    """The object in pickle ``path``, built by :class:`ArrayUnpickler` (latin1: Python 2 pickles of Caffe2)."""
    try:
        with path.open("rb") as handle:
            return ArrayUnpickler(io.BufferedReader(handle), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"backbone weights file {path} is not a pickle of numpy arrays ({error})") from None


def read_weights_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state, layout)`` of a pretrained backbone file (see the module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it holds
    anything but a mapping of arrays / tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {path} does not exist")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        state, layout = _unwrap_pickle(load_array_pickle(path), path)
    else:
        state, layout = _unwrap_torch(_load_torch(path), path), "torch"
    tensors = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"backbone weights file {path}: entry {key!r} is not a named tensor or array")
        tensors[key.removeprefix("module.")] = value
    return tensors, layout


def _load_torch(path: Path) -> Any:
    try:
        return load_torch_file(path, "backbone weights")
    except TorchFileError as error:
        raise ValueError(str(error)) from None


def _unwrap_torch(state: Any, path: Path) -> dict:
    for wrapper_key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper_key), dict):
            state = state[wrapper_key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"backbone weights file {path} does not hold a state dict of tensors")
    return state


def _unwrap_pickle(data: Any, path: Path) -> tuple[dict, str]:
    if not isinstance(data, dict):
        raise ValueError(f"backbone weights file {path} holds a {type(data).__name__}, not a mapping of arrays")
    if "model" in data and "__author__" in data and isinstance(data["model"], dict):
        return data["model"], "detectron2"
    blobs = data.get("blobs", data)
    if not isinstance(blobs, dict):
        raise ValueError(f"backbone weights file {path}: 'blobs' is not a mapping of arrays")
    return {k: v for k, v in blobs.items() if isinstance(v, np.ndarray)}, "caffe2"


# Caffe2 -> detectron2 names (the facts of detectron2's ``convert_basic_c2_names``, backbone part).
_C2_SUFFIXES: tuple[tuple[str, str], ...] = (
    (r"\.b$", ".bias"),
    (r"\.w$", ".weight"),
    (r"bn\.s$", "norm.weight"),
    (r"bn\.bias$", "norm.bias"),
    (r"bn\.rm$", "norm.running_mean"),
    (r"bn\.riv$", "norm.running_var"),
    (r"bn\.running\.mean$", "norm.running_mean"),
    (r"bn\.running\.var$", "norm.running_var"),
    (r"bn\.gamma$", "norm.weight"),
    (r"bn\.beta$", "norm.bias"),
    (r"^res\.conv1\.norm\.", "conv1.norm."),
    (r"^conv1\.", "stem.conv1."),
)
_C2_BLOCKS: tuple[tuple[str, str], ...] = (
    (".branch1.", ".shortcut."),
    (".branch2a.", ".conv1."),
    (".branch2b.", ".conv2."),
    (".branch2c.", ".conv3."),
)


def caffe2_to_detectron2_name(name: str) -> str:
    """``res2_0_branch2a_bn_s`` -> ``res2.0.conv1.norm.weight``; ``conv1_w`` -> ``stem.conv1.weight``."""
    name = name.replace("_", ".")
    for pattern, replacement in _C2_SUFFIXES:
        name = re.sub(pattern, replacement, name)
    for old, new in _C2_BLOCKS:
        name = name.replace(old, new)
    return name
