"""Synthetic demo dataset written as the AVSBench release trees (S4, MS3, AVSS), plus mp4 videos.

Scenes (:mod:`.scene`) show several coloured shapes; sounds (:mod:`.sound`) give each class its
own pitch and rhythm; which objects sound is drawn independently of how they look
(:mod:`.plan`), so the sounding object cannot be found from pixels alone. Files go where the
official loaders read them (:mod:`.layouts`), so ``make demo`` runs through the same code paths
as the real AVSBench; the mp4s sit where AVSBench's preprocessing reads raw videos.

The generator owns exactly the files it lists in ``{tree}/.demo_files.json`` (one per tree):
rerunning it rewrites those, deletes the ones no longer planned, and keeps everything else,
including videos and meta-CSV rows a user added (see docs/data.md, "Adding a video").
Files are byte-identical for the same config on any x86-64 machine: PNG/JPEG/wav from pinned
libraries, mp4 from the pinned ffmpeg of the imageio-ffmpeg wheel with bitexact flags and no
CPU-specific code (``encode_video(pinned=True)``).
"""

from __future__ import annotations

from pipeline.demo.generate import STAMP, generate_demo, owned_path
from pipeline.demo.plan import FLAVOURS, SPLITS, DemoConfig, VideoPlan, build_scene, plan_videos
from pipeline.demo.scene import CLASSES, FPS, KEY_FRAMES, SECONDS, render_video
from pipeline.demo.sound import class_sound, synth_audio

__all__ = [
    "CLASSES",
    "FLAVOURS",
    "FPS",
    "KEY_FRAMES",
    "SECONDS",
    "SPLITS",
    "STAMP",
    "DemoConfig",
    "VideoPlan",
    "build_scene",
    "class_sound",
    "generate_demo",
    "owned_path",
    "plan_videos",
    "render_video",
    "synth_audio",
]
