"""Where the demo writes each file: the AVSBench release trees, exactly as released.

Paths follow the official loaders (OpenNLPLab/AVSBench ``avs_scripts/avs_s4``, ``avs_ms3``, ``avss``)
and preprocessing scripts (the raw videos are where ``preprocess_s4.py`` / ``preprocess_ms3.py``
read them); ``docs/data.md`` draws the trees::

    Single-source/s4_meta_data.csv                      name,start,category,split
    Single-source/s4_data/visual_frames/{split}/{category}/{name}/{name}_{k}.png     k = 1..5
    Single-source/s4_data/audio_wav/{split}/{category}/{name}.wav
    Single-source/s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png          train: k = 1 only
    Single-source/s4_data/raw_videos/{split}/{category}/{name}.mp4
    Multi-sources/ms3_meta_data.csv                     video_id,split
    Multi-sources/ms3_data/visual_frames/{video}/{video}.mp4_{k}.png                 no split folder
    Multi-sources/ms3_data/audio_wav/{split}/{video}.wav
    Multi-sources/ms3_data/gt_masks/{split}/{video}/{video}_{k}.png                  k = 1..5
    Multi-sources/ms3_data/raw_videos/{video}.mp4
    AVSBench_semantic/metadata.csv                      vid,uid,s_min,s_sec,a_obj,split,label
    AVSBench_semantic/label2idx.json                    71 names -> 0..70
    AVSBench_semantic/{v1s,v1m}/{uid}/frames/{i}.jpg, audio.wav                      i = 0..4
    AVSBench_semantic/{v1s,v1m}/{uid}/labels_rgb/{i}.png, labels_semantic/{i}.png    v1s train: i = 0 only
    AVSBench_semantic/{v1s,v1m}/{uid}/raw_video.mp4     (demo only: not in the release)

``audio_log_mel`` (VGGish log-mel pickles of the release) is not written: the pipeline computes
log-mel from the wavs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.demo.plan import VideoPlan
from pipeline.demo.scene import CLASSES, SECONDS
from pipeline.labels import NUM_AVSS_CLASSES

ROOTS = {"s4": "Single-source", "ms3": "Multi-sources", "avss": "AVSBench_semantic"}
META = {"s4": "s4_meta_data.csv", "ms3": "ms3_meta_data.csv", "avss": "metadata.csv"}
META_HEADER = {
    "s4": ["name", "start", "category", "split"],
    "ms3": ["video_id", "split"],
    "avss": ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"],
}
META_KEY = {"s4": "name", "ms3": "video_id", "avss": "uid"}  # the column naming a video


@dataclass
class VideoFiles:
    """Every file of one demo video, relative to the demo folder."""

    video: Path
    frames: list[Path]  # one per second
    audio: Path
    labels: list[tuple[int, Path]]  # (second, label image) of every labelled second
    semantic: list[Path]  # AVSS class-id images, one per labelled second ([] for S4/MS3)

    def all(self) -> list[Path]:
        return [self.video, *self.frames, self.audio, *(p for _, p in self.labels), *self.semantic]


def labelled_seconds(plan: VideoPlan) -> list[int]:
    """S4 train and AVSS v1s train: frame 1 only (semi-supervised); everything else: all."""
    single_train = plan.split == "train" and (plan.flavour == "s4" or plan.category == "v1s")
    return [0] if single_train else list(range(SECONDS))


def video_files(plan: VideoPlan) -> VideoFiles:
    name, split, cat = plan.name, plan.split, plan.category
    secs = labelled_seconds(plan)
    if plan.flavour == "s4":
        base = Path(ROOTS["s4"]) / "s4_data"
        return VideoFiles(
            video=base / "raw_videos" / split / cat / f"{name}.mp4",
            frames=[base / "visual_frames" / split / cat / name / f"{name}_{k + 1}.png" for k in range(SECONDS)],
            audio=base / "audio_wav" / split / cat / f"{name}.wav",
            labels=[(s, base / "gt_masks" / split / cat / name / f"{name}_{s + 1}.png") for s in secs],
            semantic=[],
        )
    if plan.flavour == "ms3":
        base = Path(ROOTS["ms3"]) / "ms3_data"
        return VideoFiles(
            video=base / "raw_videos" / f"{name}.mp4",
            frames=[base / "visual_frames" / name / f"{name}.mp4_{k + 1}.png" for k in range(SECONDS)],
            audio=base / "audio_wav" / split / f"{name}.wav",
            labels=[(s, base / "gt_masks" / split / name / f"{name}_{s + 1}.png") for s in secs],
            semantic=[],
        )
    folder = Path(ROOTS["avss"]) / cat / name
    return VideoFiles(
        video=folder / "raw_video.mp4",
        frames=[folder / "frames" / f"{k}.jpg" for k in range(SECONDS)],
        audio=folder / "audio.wav",
        labels=[(s, folder / "labels_rgb" / f"{s}.png") for s in secs],
        semantic=[folder / "labels_semantic" / f"{s}.png" for s in secs],
    )


def meta_row(plan: VideoPlan, sounding_names: list[str]) -> list:
    """The video's row of its flavour's meta CSV (columns :data:`META_HEADER`)."""
    if plan.flavour == "s4":
        return [plan.name, 0, plan.category, plan.split]
    if plan.flavour == "ms3":
        return [plan.name, plan.split]
    return [plan.name, plan.name, 0, 0, ",".join(sounding_names), plan.split, plan.category]


def label2idx(num_classes: int) -> dict[str, int]:
    """The 71 entries the official AVSS loader asserts: background, the demo classes, then unused ids."""
    names = ["background", *(c.name for c in CLASSES[:num_classes])]
    names += [f"unused_{k}" for k in range(len(names), NUM_AVSS_CLASSES)]
    return {name: k for k, name in enumerate(names)}
