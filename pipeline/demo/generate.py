"""Writing the demo release trees: every file of each planned video, the meta CSVs and the stamps.

The generator owns exactly the files it lists in ``{tree}/.demo_files.json`` (``STAMP``, one per tree):
rerunning it rewrites those, deletes the ones no longer planned, and keeps everything else,
including videos and meta-CSV rows a user added (see docs/data.md, "Adding a video").
"""

from __future__ import annotations

import csv
import json
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from pipeline.atomic import atomic_path, write_bytes, write_csv
from pipeline.demo import layouts
from pipeline.demo.layouts import ROOTS, VideoFiles, label2idx, meta_row, video_files
from pipeline.demo.plan import FLAVOURS, DemoConfig, VideoPlan, build_scene, plan_videos
from pipeline.demo.scene import CLASSES, FPS, KEY_FRAMES, SECONDS, render_video
from pipeline.demo.sound import synth_audio, wav_bytes
from pipeline.labels import voc_palette
from pipeline.media import AUDIO_RATE, encode_video

VIDEO_CRF = 23  # x264's default quality: flat synthetic content stays clean, ~20% less CPU than 18
JPEG_QUALITY = 90
STAMP = ".demo_files.json"
_PALETTE = voc_palette(256)


def _write_image(path: Path, array: np.ndarray, **save: object) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp:
        Image.fromarray(array).save(tmp, **save)


def _label_images(plan: VideoPlan, scene, ids: np.ndarray, sec: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(label image, AVSS class-id image or None) of one second: visible pixels of sounding objects."""
    sounding = [k for k, obj in enumerate(scene.objects) if obj.sounding[sec]]
    if plan.flavour != "avss":
        return np.where(np.isin(ids[sec], [k + 1 for k in sounding]), 255, 0).astype(np.uint8), None
    lut = np.zeros(256, np.uint8)
    for k in sounding:
        lut[k + 1] = scene.objects[k].class_id + 1
    class_ids = lut[ids[sec]]
    return _PALETTE[class_ids], class_ids


def _make_video(root: Path, config: DemoConfig, plan: VideoPlan) -> dict:
    """Render, synthesise and write every file of one video; return its truth record."""
    scene = build_scene(plan, config)
    frames, ids = render_video(scene)
    audio = synth_audio(scene)
    files: VideoFiles = video_files(plan)
    encode_video(root / files.video, frames, FPS, audio, AUDIO_RATE, crf=VIDEO_CRF, pinned=True)
    for path, frame in zip(files.frames, frames[list(KEY_FRAMES)]):
        save = {"quality": JPEG_QUALITY} if path.suffix == ".jpg" else {}
        _write_image(root / path, frame, **save)
    write_bytes(root / files.audio, wav_bytes(audio))
    for i, (sec, path) in enumerate(files.labels):
        label, class_ids = _label_images(plan, scene, ids, sec)
        _write_image(root / path, label)
        if class_ids is not None:
            _write_image(root / files.semantic[i], class_ids)
    sounding = [sorted(CLASSES[o.class_id].name for o in scene.objects if o.sounding[s]) for s in range(SECONDS)]
    return {
        "split": plan.split,
        "category": plan.category,
        "video": files.video.as_posix(),
        "frames": [p.as_posix() for p in files.frames],
        "audio": files.audio.as_posix(),
        "labelled_seconds": [s for s, _ in files.labels],
        "labels": [p.as_posix() for _, p in files.labels],
        "objects": [
            {"class": CLASSES[o.class_id].name, "class_id": o.class_id, "draw_order": k, "sounding": list(o.sounding)}
            for k, o in enumerate(scene.objects)
        ],
        "sounding_classes": sounding,
        "files": [p.as_posix() for p in files.all()],
    }


def _read_stamp(root: Path, flavour: str) -> dict:
    """The previous run's stamp; an unreadable or malformed one owns nothing (so nothing is deleted)."""
    path = root / ROOTS[flavour] / STAMP
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"names": [], "files": []}
    valid = isinstance(stamp, dict) and all(
        isinstance(stamp.get(k), list) and all(isinstance(v, str) for v in stamp[k]) for k in ("names", "files")
    )
    if not valid:
        warnings.warn(f"{path}: not a stamp of this generator (ignored; nothing it lists is deleted)", stacklevel=2)
        return {"names": [], "files": []}
    return stamp


def _write_meta(
    root: Path, flavour: str, plans: list[VideoPlan], truth: dict, owned: set[str], num_classes: int
) -> list[str]:
    """Write the flavour's meta CSV: the generator's rows, then every row it does not own (a
    user's additions) unchanged. Returns the files written (relative to ``root``)."""
    tree = Path(ROOTS[flavour])
    meta = tree / layouts.META[flavour]
    header, key = layouts.META_HEADER[flavour], layouts.META_KEY[flavour]
    kept = []
    if (root / meta).is_file():
        with open(root / meta, newline="", encoding="utf-8-sig") as fh:
            kept = [r for r in csv.DictReader(fh) if r.get(key) not in owned]
    ours = [
        dict(zip(header, meta_row(p, sorted({c for sec in truth[p.name]["sounding_classes"] for c in sec}))))
        for p in plans
    ]
    write_csv(root / meta, [*ours, *kept], header)
    written = [meta.as_posix()]
    if flavour == "avss":
        text = json.dumps(label2idx(num_classes), indent=1)
        write_bytes(root / tree / "label2idx.json", text.encode())
        written.append((tree / "label2idx.json").as_posix())
    return written


def owned_path(root: Path, tree: str, rel: str) -> Path | None:
    """``root / rel`` when ``rel`` (a stamp entry) names a file inside ``root / tree``, else None.

    A stamp is a plain file anyone can edit: an absolute path, ``..``, or a folder that is a link out
    of the tree must never make the generator delete a file it did not write."""
    parts = PurePosixPath(rel).parts
    if not rel or PurePosixPath(rel).is_absolute() or ".." in parts or "\\" in rel or parts[:1] != (tree,):
        return None
    path = root / rel
    return path if path.parent.resolve().is_relative_to((root / tree).resolve()) else None


def _prune(root: Path, tree: str, stale: Iterable[str]) -> None:
    """Delete files the previous run wrote and this one did not, and folders left empty, never leaving
    ``root / tree`` (entries that would are skipped with a warning)."""
    for rel in stale:
        path = owned_path(root, tree, rel)
        if path is None:
            warnings.warn(f"{root / tree / STAMP}: entry {rel!r} is outside {tree}/; not deleted", stacklevel=2)
            continue
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent == root / tree or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()


def _iter_results(fn, items: list, workers: int) -> Iterator:
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:  # ffmpeg and zlib release the GIL
        yield from pool.map(fn, items)


def _remove_legacy(out_dir: Path) -> None:
    """Earlier versions wrote ``s4/ ms3/ avss/`` (not the release trees) here: remove those."""
    for old, meta in (("s4", "s4_meta_data.csv"), ("ms3", "ms3_meta_data.csv"), ("avss", "classes.csv")):
        if (out_dir / old / meta).is_file():
            shutil.rmtree(out_dir / old)


def _summary(config: DemoConfig, flavours: tuple[str, ...]) -> dict:
    return {
        "config": asdict(config),
        "flavours": list(flavours),
        "counts": {f: config.counts(f) for f in flavours},
        "classes": [
            {
                "id": c,
                "name": CLASSES[c].name,
                "shape": CLASSES[c].shape,
                "colour": list(CLASSES[c].colour),
                "f0_hz": CLASSES[c].f0,
                "pulse_hz": CLASSES[c].pulse_hz,
            }
            for c in range(config.num_classes)
        ],
        "fps": FPS,
        "seconds": SECONDS,
        "audio_rate": AUDIO_RATE,
        "key_frames": list(KEY_FRAMES),
        "trees": {f: ROOTS[f] for f in flavours},
    }


def _finish_tree(out_dir: Path, flavour: str, plans: list[VideoPlan], truth: dict, num_classes: int) -> None:
    """Meta CSV, stale-file pruning and the stamp of one tree (the stamp last: it marks completion)."""
    previous = _read_stamp(out_dir, flavour)
    owned = set(previous["names"]) | {p.name for p in plans}
    files = _write_meta(out_dir, flavour, plans, truth, owned, num_classes)
    files += [f for p in plans for f in truth[p.name]["files"]]
    _prune(out_dir, ROOTS[flavour], sorted(set(previous["files"]) - set(files)))
    stamp = {"names": [p.name for p in plans], "files": sorted(files)}
    write_bytes(out_dir / ROOTS[flavour] / STAMP, json.dumps(stamp, indent=1, sort_keys=True).encode())


def generate_demo(
    out_dir: str | Path, config: DemoConfig, flavours: Iterable[str] = FLAVOURS, progress: bool = True, workers: int = 1
) -> dict:
    """Write the demo release trees under ``out_dir`` and return a summary.

    Every file is written atomically; ``{tree}/.demo_files.json`` is written last, so a crash
    leaves the previous stamp and a rerun redoes the tree. Files the generator does not own are
    kept. ``workers`` > 1 encodes videos in parallel threads; the files do not depend on it.
    Summary: ``{"counts": {flavour: {split: n}}, "num_videos", "num_label_images", "elapsed_s", "out_dir"}``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    flavours = tuple(flavours)
    for fl in flavours:
        if fl not in FLAVOURS:
            raise ValueError(f"unknown demo flavour {fl!r}; choose from {FLAVOURS}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_legacy(out_dir)
    plans = {fl: plan_videos(config, fl) for fl in flavours}
    jobs = [p for fl in flavours for p in plans[fl]]
    results = _iter_results(lambda p: _make_video(out_dir, config, p), jobs, workers)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), desc="demo videos", unit="video")
    truth: dict[str, dict] = {fl: {} for fl in flavours}
    for plan, info in zip(jobs, results):
        truth[plan.flavour][plan.name] = info
    for fl in flavours:
        _finish_tree(out_dir, fl, plans[fl], truth[fl], config.num_classes)
    write_bytes(out_dir / "demo_truth.json", json.dumps(truth, indent=1, sort_keys=True).encode())
    write_bytes(
        out_dir / "demo_summary.json", json.dumps(_summary(config, flavours), indent=1, sort_keys=True).encode()
    )
    num_labels = sum(len(v["labelled_seconds"]) for fl in truth.values() for v in fl.values())
    return {
        "counts": {fl: config.counts(fl) for fl in flavours},
        "num_videos": len(jobs),
        "num_label_images": num_labels,
        "out_dir": str(out_dir),
        "elapsed_s": round(time.perf_counter() - start, 2),
    }
