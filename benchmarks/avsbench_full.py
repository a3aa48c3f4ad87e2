"""Write AVSBench-sized release trees (S4, MS3, AVSS) with the real counts, for scale measurements.

The trees have the released layouts read by ``pipeline/manifest/sources.py`` (docs/data.md: frames + wav,
no video files, so nothing needs encoding), the real split sizes and frame counts, and COMBO's
``pre_SAM_mask`` maskige tree beside them::

    S4    4,932 videos  3,452 / 740 / 740   23 categories, 5 frames, train labelled on frame 1
    MS3     424 videos    296 /  64 /  64   5 frames, all labelled
    AVSS 11,356 videos  8,498 / 1,304 / 1,554: v1s (= S4) + v1m (= MS3) + v2 (4,750 / 500 / 750, 10 frames)

Content is synthetic but sized like the release: 224x224 PNG frames with texture (about the byte
size of AVSBench's natural-image PNGs), 16 kHz mono wavs of the clip's length, binary / palette
label PNGs, ADE20K-palette maskiges; AVSS frames are 320x240 JPEGs (the release keeps each video's
own size). Seeded: the same ``--seed`` and ``--fraction`` write the same files.

    python benchmarks/avsbench_full.py --out data/raw/full --fraction 0.1       # 1/10 of each set
    python benchmarks/avsbench_full.py --out data/raw/full --datasets s4 ms3    # full S4 + MS3

``--fraction f`` keeps round(f * n) videos of every split (at least 1). Existing files are kept, so
an interrupted run resumes; every file goes through a temporary name.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.atomic import write_bytes  # noqa: E402
from pipeline.labels import voc_palette  # noqa: E402
from pipeline.proposals.palette import ade20k_palette  # noqa: E402

SPLITS = ("train", "val", "test")
COUNTS = {  # videos per split of the release (AVSBench papers; shared/notes)
    "s4": (3452, 740, 740),
    "ms3": (296, 64, 64),
    "v2": (4750, 500, 750),  # AVSS = v1s (the S4 videos) + v1m (the MS3 videos) + v2
}
S4_CATEGORIES = (
    "ambulance_siren baby_laughter cap_gun_shooting cat_meowing chainsawing_trees coyote_howling "
    "dog_barking driving_buses female_singing helicopter horse_clip-clop lawn_mowing lions_roaring "
    "male_speech mynah_bird_singing playing_acoustic_guitar playing_glockenspiel playing_piano "
    "playing_tabla playing_ukulele playing_violin race_car typing_on_computer_keyboard"
).split()
FRAME = 224
AVSS_FRAME = (240, 320)  # h, w of the synthetic AVSS release frames
RATE = 16000
ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
_VOC = voc_palette(256)
_ADE = ade20k_palette()  # [150, 3]: the colours of COMBO's maskiges


@dataclass(frozen=True)
class Video:
    """One video to write: its flavour (s4, ms3, v1s, v1m, v2), split, category and name."""

    flavour: str
    split: str
    category: str
    name: str
    seed: int

    @property
    def frames(self) -> int:
        return 10 if self.flavour == "v2" else 5


def _ids(rng: np.random.Generator, n: int) -> list[str]:
    return ["".join(rng.choice(ID_CHARS, 11)) for _ in range(n)]


def _scaled(counts: tuple[int, int, int], fraction: float) -> list[int]:
    return [max(1, round(c * fraction)) for c in counts]


def plan(fraction: float, seed: int) -> dict[str, list[Video]]:
    """Every video of the three sets; AVSS v1s / v1m reuse the S4 / MS3 videos, as the release does."""
    rng = np.random.default_rng(seed)
    s4, ms3, v2 = [], [], []
    for split, n in zip(SPLITS, _scaled(COUNTS["s4"], fraction)):
        cats = rng.choice(len(S4_CATEGORIES), n)
        s4 += [Video("s4", split, S4_CATEGORIES[c], nm, int(rng.integers(2**31))) for c, nm in zip(cats, _ids(rng, n))]
    for split, n in zip(SPLITS, _scaled(COUNTS["ms3"], fraction)):
        ms3 += [Video("ms3", split, "", nm, int(rng.integers(2**31))) for nm in _ids(rng, n)]
    for split, n in zip(SPLITS, _scaled(COUNTS["v2"], fraction)):
        v2 += [Video("v2", split, "v2", f"{nm}_{k % 3}", int(rng.integers(2**31))) for k, nm in enumerate(_ids(rng, n))]
    avss = [Video("v1s", v.split, "v1s", f"{v.name}_0", v.seed + 1) for v in s4]
    avss += [Video("v1m", v.split, "v1m", f"{v.name}_0", v.seed + 1) for v in ms3] + v2
    return {"s4": s4, "ms3": ms3, "avss": avss}


# ---------------------------------------------------------------- content
def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random scene with fine noise: PNGs of about the release's byte size."""
    low = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.int16)
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random ellipse mask [h, w] bool (the 'sounding object')."""
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _maskige(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A COMBO-like maskige label map [h, w] uint8: nested random regions, labels 0..23."""
    labels = np.zeros((h, w), np.uint8)
    for k in range(1, int(rng.integers(4, 24))):
        labels[_blob(rng, h, w)] = k
    return labels


def _png(array: np.ndarray, mode: str | None = None, palette: np.ndarray | None = None) -> bytes:
    img = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        img.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _wav(rng: np.random.Generator, seconds: int) -> bytes:
    t = np.arange(seconds * RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + rng.normal(0, 0.05, t.size)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(tone, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


# ---------------------------------------------------------------- layouts (docs/data.md)
def video_paths(v: Video) -> dict[str, list[Path] | Path]:
    """frames, labels (the labelled ones), maskiges and the wav of one video, relative to the out folder."""
    n, s = v.name, v.split
    if v.flavour == "s4":
        base = Path("Single-source/s4_data")
        lab = [1] if s == "train" else range(1, 6)
        return {
            "frames": [base / f"visual_frames/{s}/{v.category}/{n}/{n}_{k}.png" for k in range(1, 6)],
            "labels": [base / f"gt_masks/{s}/{v.category}/{n}/{n}_{k}.png" for k in lab],
            "maskiges": [base / f"pre_SAM_mask/{s}/{v.category}/{n}/{n}_{k}_mask_color.png" for k in range(1, 6)],
            "wav": base / f"audio_wav/{s}/{v.category}/{n}.wav",
        }
    if v.flavour == "ms3":
        base = Path("Multi-sources/ms3_data")
        return {
            "frames": [base / f"visual_frames/{n}/{n}.mp4_{k}.png" for k in range(1, 6)],
            "labels": [base / f"gt_masks/{s}/{n}/{n}_{k}.png" for k in range(1, 6)],
            "maskiges": [base / f"pre_SAM_mask/{n}/{n}.mp4_{k}_mask_color.png" for k in range(1, 6)],
            "wav": base / f"audio_wav/{s}/{n}.wav",
        }
    base = Path("AVSBench_semantic") / v.flavour / n
    lab = [0] if (v.flavour == "v1s" and s == "train") else range(v.frames)
    masks = Path(f"AVSBench_semantic/pre_SAM_mask/AVSBench_semantic/{v.flavour}/{n}/processed_frames")
    return {
        "frames": [base / f"frames/{i}.jpg" for i in range(v.frames)],
        "labels": [base / f"labels_rgb/{i}.png" for i in lab],
        "maskiges": [masks / f"{i}_mask_color.png" for i in range(v.frames)],
        "wav": base / "audio.wav",
    }


def write_video(out: Path, v: Video) -> int:
    """Writes every file of one video that does not exist yet; returns the bytes written."""
    paths = video_paths(v)
    if all((out / p).exists() for p in [*paths["frames"], *paths["labels"], *paths["maskiges"], paths["wav"]]):
        return 0
    rng = np.random.default_rng(v.seed)
    avss = v.flavour in ("v1s", "v1m", "v2")
    h, w = AVSS_FRAME if avss else (FRAME, FRAME)
    files: dict[Path, bytes] = {paths["wav"]: _wav(rng, v.frames)}
    for p in paths["frames"]:
        frame = _texture(rng, h, w)
        files[p] = _jpeg(frame) if avss else _png(frame)
    for p in paths["labels"]:
        blob = _blob(rng, h, w)
        if avss:
            ids = np.where(blob, int(rng.integers(1, 71)), 0).astype(np.uint8)
            files[p] = _png(_VOC[ids])
        else:
            files[p] = _png(np.where(blob, 255, 0).astype(np.uint8), "L")
    for p in paths["maskiges"]:
        files[p] = _png(_maskige(rng, FRAME, FRAME), "P", _ADE)  # COMBO's putpalette PNGs
    for rel, data in files.items():
        write_bytes(out / rel, data)
    return sum(len(d) for d in files.values())


def write_meta(out: Path, videos: dict[str, list[Video]]) -> None:
    """The meta CSVs beside the data folders (and AVSS's label2idx.json)."""
    rows = {
        "Single-source/s4_meta_data.csv": [["name", "start", "category", "split"]]
        + [[v.name, 0, v.category, v.split] for v in videos["s4"]],
        "Multi-sources/ms3_meta_data.csv": [["video_id", "split"]] + [[v.name, v.split] for v in videos["ms3"]],
        "AVSBench_semantic/metadata.csv": [["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]]
        + [[v.name.rsplit("_", 1)[0], v.name, 0, 0, "object", v.split, v.category] for v in videos["avss"]],
    }
    for rel, table in rows.items():
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(table)
        write_bytes(out / rel, buf.getvalue().encode())
    names = {"background": 0, **{f"class_{k}": k for k in range(1, 71)}}
    write_bytes(out / "AVSBench_semantic/label2idx.json", json.dumps(names).encode())


def _write_chunk(args: tuple[str, list[Video]]) -> int:
    out, chunk = args
    return sum(write_video(Path(out), v) for v in chunk)


def generate(out: Path, datasets: list[str], fraction: float, seed: int, workers: int) -> dict:
    """Writes the chosen sets; returns counts, bytes and seconds."""
    start = time.perf_counter()
    videos = plan(fraction, seed)
    write_meta(out, videos)
    todo = [v for name in datasets for v in videos[name]]
    chunks = [(str(out), todo[i : i + 64]) for i in range(0, len(todo), 64)]
    with ProcessPoolExecutor(workers) as pool:
        written = sum(pool.map(_write_chunk, chunks))
    return {
        "fraction": fraction,
        "seed": seed,
        "videos": {name: len(videos[name]) for name in datasets},
        "frames": {name: sum(v.frames for v in videos[name]) for name in datasets},
        "bytes_written": written,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the three release trees")
    parser.add_argument("--datasets", nargs="+", choices=["s4", "ms3", "avss"], default=["s4", "ms3", "avss"])
    parser.add_argument("--fraction", type=float, default=1.0, help="share of every split to write (0 < f <= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    summary = generate(args.out, args.datasets, args.fraction, args.seed, max(1, args.workers))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
