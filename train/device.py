"""The one rule for the device a trained model runs on (``avs evaluate`` and ``avs predict`` alike)."""

from __future__ import annotations

import torch


def inference_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1"; None or "auto": CUDA when available, else the CPU).

    A CUDA device asked for on a machine without one is an error, not a silent fall-back to the CPU."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ValueError(f"device {requested!r}: not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r}: no CUDA device on this machine (use 'cpu' or 'auto')")
    return device
