"""The failures file every stage writes beside its outputs.

One row per video that a stage could not process (``level=error``: the video is left out) or
processed in a degraded way (``level=warning``: e.g. no audio stream, silence used). A bad video
never aborts a run; ``strict`` turns errors into a non-zero exit at the end.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.atomic import write_csv

COLUMNS = ("video_id", "stage", "level", "source", "reason")


@dataclass(frozen=True)
class Failure:
    video_id: str
    stage: str
    level: str  # "error" or "warning"
    source: str
    reason: str


class FailureLog:
    """Collects failures of one stage run; :meth:`write` always writes (an empty file = no failures)."""

    def __init__(self, stage: str = "") -> None:
        self.stage = stage
        self.rows: list[Failure] = []

    def add(self, video_id: str, reason: str, source: str = "", level: str = "error") -> None:
        # One line per failure: the reason must stay on one CSV row and be readable in a terminal.
        reason = " ".join(str(reason).split())
        self.rows.append(Failure(video_id, self.stage, level, str(source), reason))

    def warn(self, video_id: str, reason: str, source: str = "") -> None:
        self.add(video_id, reason, source, level="warning")

    @property
    def errors(self) -> list[Failure]:
        return [r for r in self.rows if r.level == "error"]

    def write(self, path: str | Path) -> None:
        write_csv(path, (asdict(row) for row in self.rows), COLUMNS)


def read_failures(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
