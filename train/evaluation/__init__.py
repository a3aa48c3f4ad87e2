"""Evaluation on cached shards, in parts:

- ``params``: ``EvalParams``, the ``evaluate`` section of params.yaml;
- ``scoring``: AVSBench metrics with the clip's own audio, with audio shuffled across test videos
  (the audio-dependence check) and under negative audio;
- ``negative_audio``: silence, seeded noise and off-screen audio, and the false-positive measures;
- ``artefacts``: strips of the worst and best videos (``overlays/``), their audio (``audio/``),
  CSV / JSON through ``pipeline.atomic``;
- ``metrics_log``: ``metrics.json`` through dvclive (``dvc metrics show``, ``dvc exp show``);
- ``run``: :func:`evaluate`, which composes them and renders ``report.html`` (:mod:`train.report`).
"""

from __future__ import annotations

from train.evaluation.artefacts import pick_strip_videos
from train.evaluation.params import EvalParams
from train.evaluation.run import evaluate

__all__ = ["EvalParams", "evaluate", "pick_strip_videos"]
