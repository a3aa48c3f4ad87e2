"""``avs evaluate``'s library entry: :func:`evaluate` and its params (the parts live in
:mod:`train.evaluation`)."""

from __future__ import annotations

from train.evaluation import EvalParams, evaluate, pick_strip_videos

__all__ = ["EvalParams", "evaluate", "pick_strip_videos"]
