"""The changes bench_scale.py makes to a generated release tree between two timed ``dvc repro`` runs."""

from __future__ import annotations

from pathlib import Path

import avsbench_full
from PIL import Image

ADDED_VIDEO = avsbench_full.Video("s4", "train", "dog_barking", "zzAddedOne0", 7)


def add_one_video(raw: Path) -> None:
    """A new S4 train video: its files and its meta row."""
    avsbench_full.write_video(raw, ADDED_VIDEO)
    meta = raw / "Single-source" / "s4_meta_data.csv"
    if ADDED_VIDEO.name not in meta.read_text():
        with meta.open("a") as f:
            f.write(f"{ADDED_VIDEO.name},0,{ADDED_VIDEO.category},train\n")


def remove_added_video(raw: Path) -> None:
    """An earlier run's added video out of the cached tree (generate() rewrites the meta CSVs itself)."""
    paths = avsbench_full.video_paths(ADDED_VIDEO)
    for rel in [*paths["frames"], *paths["labels"], *paths["maskiges"], paths["wav"]]:
        (raw / rel).unlink(missing_ok=True)


def remove_one_video(raw: Path) -> None:
    """Undo :func:`add_one_video`: its files and its meta row go (between two timed adds)."""
    remove_added_video(raw)
    meta = raw / "Single-source" / "s4_meta_data.csv"
    lines = meta.read_text().splitlines(keepends=True)
    meta.write_text("".join(line for line in lines if not line.startswith(f"{ADDED_VIDEO.name},")))


def edit_one_label(raw: Path) -> None:
    """One pixel of one S4 test ground-truth mask flips (a flip again on the next run: a change either way)."""
    label = sorted((raw / "Single-source" / "s4_data" / "gt_masks" / "test").rglob("*_2.png"))[0]
    img = Image.open(label).convert("L")
    pixels = bytearray(img.tobytes())
    pixels[0] = 255 - pixels[0]
    Image.frombytes("L", img.size, bytes(pixels)).save(label)
