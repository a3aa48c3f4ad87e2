"""Synthetic demo dataset: layouts, determinism, and ground truth that only audio can explain."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import demo, labels, manifest
from pipeline.demo import CLASSES, DemoConfig, generate_demo, plan_videos
from pipeline.labels import NUM_AVSS_CLASSES
from pipeline.media import AUDIO_RATE, extract_clip, probe, read_audio

REPO = Path(__file__).resolve().parents[2]
TINY = DemoConfig(
    seed=7, frame_size=(64, 80), num_classes=6, s4_videos=(2, 1, 1), ms3_videos=(1, 1, 1), avss_videos=(2, 1, 1)
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "data"
    summary = generate_demo(out, TINY, progress=False)
    return out, summary


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _truth(root: Path) -> dict:
    return json.loads((root / "demo_truth.json").read_text())


S4 = Path("Single-source")
MS3 = Path("Multi-sources")
AVSS = Path("AVSBench_semantic")


def test_summary_counts(tiny):
    out, summary = tiny
    assert summary["counts"] == {
        "s4": {"train": 2, "val": 1, "test": 1},
        "ms3": {"train": 1, "val": 1, "test": 1},
        "avss": {"train": 2, "val": 1, "test": 1},
    }
    assert summary["num_videos"] == 11
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name], "temporary files left behind"
    assert sorted(p.name for p in out.iterdir()) == [
        "AVSBench_semantic",
        "Multi-sources",
        "Single-source",
        "demo_summary.json",
        "demo_truth.json",
    ]


def test_same_seed_gives_identical_files(tiny, tmp_path):
    """x264 runs single-threaded with bitexact flags, so mp4 bytes (not only frames) are compared.
    The files depend neither on the number of workers nor on which flavours are generated."""
    out, _ = tiny
    again = tmp_path / "again"
    generate_demo(again, TINY, progress=False, workers=2)
    first, second = _files(out), _files(again)
    assert first.keys() == second.keys()
    assert not [name for name in first if first[name] != second[name]]
    only_ms3 = tmp_path / "ms3_only"
    generate_demo(only_ms3, TINY, flavours=("ms3",), progress=False)
    for name, data in _files(only_ms3).items():
        if name.startswith("Multi-sources/"):
            assert data == first[name], name


def test_other_seed_differs():
    a = demo.build_scene(plan_videos(TINY, "s4")[0], TINY)
    other = DemoConfig(**{**TINY.__dict__, "seed": 8})
    b = demo.build_scene(plan_videos(other, "s4")[0], other)
    assert not np.array_equal(a.background, b.background)


def test_media_format(tiny):
    out, _ = tiny
    category = _csv(out / S4 / "s4_meta_data.csv")[1][-1]["category"]
    info = probe(out / S4 / "s4_data" / "raw_videos" / "test" / category / "demo_s4_test_0000.mp4")
    assert info.fps == 25 and (info.height, info.width) == TINY.frame_size
    assert info.audio_rate == AUDIO_RATE and info.audio_channels == 1
    assert info.duration == pytest.approx(5.0, abs=0.1)
    with wave.open(str(out / S4 / "s4_data" / "audio_wav" / "test" / category / "demo_s4_test_0000.wav")) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getnframes()) == (AUDIO_RATE, 1, 5 * AUDIO_RATE)


def test_s4_layout(tiny):
    out, _ = tiny
    data = out / S4 / "s4_data"
    header, rows = _csv(out / S4 / "s4_meta_data.csv")
    assert header == ["name", "start", "category", "split"]
    assert [r["split"] for r in rows].count("train") == 2 and len(rows) == 4
    names = {c.name for c in CLASSES[: TINY.num_classes]}
    for r in rows:
        split, cat, name = r["split"], r["category"], r["name"]
        assert cat in names
        assert (data / "raw_videos" / split / cat / f"{name}.mp4").is_file()
        assert (data / "audio_wav" / split / cat / f"{name}.wav").is_file()
        frames = sorted(p.name for p in (data / "visual_frames" / split / cat / name).iterdir())
        assert frames == [f"{name}_{k}.png" for k in range(1, 6)]
        masks = sorted(p.name for p in (data / "gt_masks" / split / cat / name).iterdir())
        expected = [f"{name}_1.png"] if split == "train" else [f"{name}_{k}.png" for k in range(1, 6)]
        assert masks == expected  # S4 train: frame 1 only
        for m in masks:
            with Image.open(data / "gt_masks" / split / cat / name / m) as img:
                assert img.mode == "L" and img.size == (TINY.frame_size[1], TINY.frame_size[0])
                values = set(np.unique(np.asarray(img)).tolist())
            assert values <= {0, 255} and 255 in values


def test_ms3_layout(tiny):
    out, _ = tiny
    data = out / MS3 / "ms3_data"
    header, rows = _csv(out / MS3 / "ms3_meta_data.csv")
    assert header == ["video_id", "split"] and sorted(r["split"] for r in rows) == ["test", "train", "val"]
    for r in rows:
        vid = r["video_id"]
        assert (data / "raw_videos" / f"{vid}.mp4").is_file()
        assert (data / "audio_wav" / r["split"] / f"{vid}.wav").is_file()
        frames = sorted(p.name for p in (data / "visual_frames" / vid).iterdir())  # no split folder
        assert frames == [f"{vid}.mp4_{k}.png" for k in range(1, 6)]
        masks = sorted(p.name for p in (data / "gt_masks" / r["split"] / vid).iterdir())
        assert masks == [f"{vid}_{k}.png" for k in range(1, 6)]
        for m in masks:
            assert set(np.unique(np.asarray(Image.open(data / "gt_masks" / r["split"] / vid / m)))) <= {0, 255}


def test_avss_layout_and_palette(tiny):
    out, _ = tiny
    root = out / AVSS
    header, rows = _csv(root / "metadata.csv")
    assert header == ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]
    assert {r["label"] for r in rows} == {"v1s", "v1m"}
    classes = json.loads((root / "label2idx.json").read_text())
    assert len(classes) == NUM_AVSS_CLASSES and classes["background"] == 0
    assert sorted(classes.values()) == list(range(NUM_AVSS_CLASSES))
    palette = labels.voc_palette(256)
    allowed = {tuple(palette[i]) for i in range(TINY.num_classes + 1)}
    assert tuple(palette[1]) == (128, 0, 0)
    for r in rows:
        folder = root / r["label"] / r["uid"]
        assert (folder / "raw_video.mp4").is_file() and (folder / "audio.wav").is_file()
        assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"{i}.jpg" for i in range(5)]
        names = sorted(p.name for p in (folder / "labels_rgb").iterdir())
        v1s_train = r["label"] == "v1s" and r["split"] == "train"
        assert names == (["0.png"] if v1s_train else [f"{i}.png" for i in range(5)])
        for name in names:
            rgb = np.asarray(Image.open(folder / "labels_rgb" / name).convert("RGB"))
            assert {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0)} <= allowed
            semantic = np.asarray(Image.open(folder / "labels_semantic" / name))
            assert np.array_equal(labels.rgb_to_class_ids(rgb).ids, semantic)


def test_manifest_reads_the_demo(tiny):
    out, _ = tiny
    s4 = manifest.rows_from_avsbench_s4(out / S4)
    ms3 = manifest.rows_from_avsbench_ms3(out / MS3)
    avss = manifest.rows_from_avsbench_semantic(out / AVSS)
    assert (len(s4), len(ms3), len(avss)) == (4, 3, 4)
    assert all(r.source_frames and not r.source_video for r in s4 + ms3 + avss)  # the released frames
    assert all(r.source_video for r in manifest.rows_from_avsbench_ms3(out / MS3, media_pref="video"))
    assert {r.frame_fit for r in avss if r.split == "train"} == {"crop"}
    # raw videos are scaled by ffmpeg, so their labels are never cropped
    assert {r.frame_fit for r in manifest.rows_from_avsbench_semantic(out / AVSS, media_pref="video")} == {"stretch"}
    for row in s4:
        labelled = [bool(p) for p in row.label_paths.split(";")]
        assert labelled == ([True] + [False] * 4 if row.split == "train" else [True] * 5)
    for row in avss:
        for path in filter(None, row.label_paths.split(";")):
            decoded = labels.read_label(path, "voc_rgb", TINY.frame_size)
            assert decoded.ids.max() <= TINY.num_classes and decoded.unknown_pixels == 0


def _band_share(segment: np.ndarray) -> dict[str, float]:
    """Share of a second's spectral energy within each class's band around its fundamental."""
    spec = np.abs(np.fft.rfft(segment * np.hanning(segment.size))) ** 2
    freqs = np.fft.rfftfreq(segment.size, 1 / AUDIO_RATE)
    total = spec.sum()
    return {
        c.name: float(spec[np.abs(freqs - c.f0) <= max(0.05 * c.f0, 25.0)].sum() / total)
        for c in CLASSES[: TINY.num_classes]
    }


def test_audio_encodes_the_sounding_classes(tiny):
    """Decoded from the AAC track: energy at a class's pitch iff that class sounds in that second."""
    out, _ = tiny
    for flavour, videos in _truth(out).items():
        for name, info in videos.items():
            audio = read_audio(out / info["video"], 5).astype(np.float64)
            for sec in range(5):
                shares = _band_share(audio[sec * AUDIO_RATE : (sec + 1) * AUDIO_RATE])
                heard = {c for c, share in shares.items() if share > 0.02}
                assert heard == set(info["sounding_classes"][sec]), (flavour, name, sec, shares)


def test_ground_truth_covers_the_sounding_objects(tiny):
    """The GT region of each labelled frame has the colour of a sounding class in the decoded video,
    and AVSS labels carry exactly the sounding classes."""
    out, _ = tiny
    truth = _truth(out)
    colours = np.array([c.colour for c in CLASSES[: TINY.num_classes]], np.float64)
    palette = labels.voc_palette(256)
    semantic_id = {c.name: i + 1 for i, c in enumerate(CLASSES)}
    for flavour, videos in truth.items():
        for name, info in videos.items():
            clip = extract_clip(out / info["video"], 5, size=TINY.frame_size)
            assert clip.frame_indices == list(demo.KEY_FRAMES)
            for sec, label in zip(info["labelled_seconds"], info["labels"]):
                sounding = set(info["sounding_classes"][sec])
                if flavour == "avss":
                    rgb = np.asarray(Image.open(out / label).convert("RGB"))
                    present = {int(i) for i in range(1, TINY.num_classes + 1) if (rgb == palette[i]).all(-1).any()}
                    assert present == {semantic_id[s] for s in sounding}
                    mask = (rgb != 0).any(-1)
                else:
                    mask = np.asarray(Image.open(out / label)) == 255
                assert mask.any(), (name, sec)
                if len(sounding) == 1:  # one sounding object: its pixels have its class colour
                    mean = clip.frames[sec][mask].astype(np.float64).mean(0)
                    nearest = CLASSES[int(np.argmin(((colours - mean) ** 2).sum(1)))].name
                    assert {nearest} == sounding, (name, sec, mean)


def test_plans_need_audio_to_decide():
    """Default config: several classes always visible, each class both sounds somewhere and is a
    silent look-alike elsewhere; S4 test sounding classes are balanced; MS3 sets change per second."""
    config = DemoConfig()
    sounds, silent = set(), set()
    for flavour in demo.FLAVOURS:
        for plan in plan_videos(config, flavour):
            assert len(set(plan.class_ids)) == len(plan.class_ids) >= 2
            for cid, row in zip(plan.class_ids, plan.sounding):
                (sounds if row.any() else silent).add(cid)
            per_second = plan.sounding.sum(0)
            assert (per_second >= 1).all() and (per_second < len(plan.class_ids)).all()
            if flavour == "s4" or plan.category == "v1s":
                assert plan.sounding.any(1).sum() == 1 and plan.sounding.any(1).sum() == plan.sounding.all(1).sum()
            else:
                assert len({tuple(plan.sounding[:, s]) for s in range(5)}) >= 2
    assert sounds == silent == set(range(config.num_classes))
    test_classes = [p.category for p in plan_videos(config, "s4") if p.split == "test"]
    counts = [test_classes.count(c.name) for c in CLASSES[: config.num_classes]]
    assert max(counts) - min(counts) <= 1


def test_default_size_fits_the_budget():
    config = DemoConfig()
    videos = sum(sum(config.counts(f).values()) for f in demo.FLAVOURS)
    assert 130 <= videos <= 160 and config.frame_size == (224, 224)


@pytest.mark.parametrize(
    "bad",
    [
        dict(frame_size=(63, 64)),
        dict(num_classes=5),
        dict(num_classes=9),
        dict(s4_videos=(1, 2)),
        dict(ms3_videos=(1, -1, 1)),
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="DemoConfig"):
        DemoConfig(**bad)


def test_crash_leaves_the_previous_stamp(tmp_path, monkeypatch):
    """A crash never writes the stamp, so DVC (whose output the stamp is) reruns the generator."""
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    calls = []

    def failing_encode(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"x")

    monkeypatch.setattr(demo.generate, "encode_video", failing_encode)  # where generate_demo looks it up
    with pytest.raises(RuntimeError, match="disk full"):
        generate_demo(out, TINY, flavours=("ms3",), progress=False)
    assert not (out / MS3 / demo.STAMP).exists() and (out / "keep.txt").read_text() == "user file"
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_user_additions_survive_regeneration(tmp_path):
    """A video a user adds (files + meta CSV row) stays when the generator reruns with other params;
    the generator's own files that are no longer planned are removed."""
    out = tmp_path / "demo"
    generate_demo(out, TINY, flavours=("s4",), progress=False)
    data = out / S4 / "s4_data"
    user_video = data / "raw_videos" / "test" / "red_circle" / "my_clip.mp4"
    user_video.parent.mkdir(parents=True, exist_ok=True)
    user_video.write_bytes(b"user video")
    with open(out / S4 / "s4_meta_data.csv", "a", newline="") as fh:
        fh.write("my_clip,0,red_circle,test\n")
    fewer = DemoConfig(**{**TINY.__dict__, "seed": 9, "s4_videos": (1, 0, 1)})
    generate_demo(out, fewer, flavours=("s4",), progress=False)
    assert user_video.read_bytes() == b"user video"
    _, rows = _csv(out / S4 / "s4_meta_data.csv")
    assert [r["name"] for r in rows] == ["demo_s4_train_0000", "demo_s4_test_0000", "my_clip"]
    stamp = json.loads((out / S4 / demo.STAMP).read_text())
    on_disk = {p.relative_to(out).as_posix() for p in (out / S4).rglob("*") if p.is_file()}
    assert on_disk == set(stamp["files"]) | {user_video.relative_to(out).as_posix(), f"{S4}/{demo.STAMP}"}


def test_demo_data_cli_is_byte_reproducible_with_the_pinned_encoder(tmp_path):
    """Two runs of ``avs demo-data`` give byte-identical trees, and the mp4s come from the pinned
    ffmpeg of the imageio-ffmpeg wheel even when another ffmpeg is on PATH or in AVS_FFMPEG."""
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(tmp_path / "data")},
                "demo": {
                    "seed": 3,
                    "frame_size": [48, 64],
                    "num_classes": 6,
                    "s4_videos": [1, 0, 1],
                    "ms3_videos": [1, 0, 0],
                    "avss_videos": [1, 1, 0],
                },
            }
        )
    )
    env = {
        **os.environ,
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        "AVS_FFMPEG": str(fake),
        "PYTHONPATH": str(REPO),
    }
    trees = []
    for run in ("a", "b"):
        out = tmp_path / run
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "stages.cli",
                "demo-data",
                "--params",
                str(params),
                "--out",
                str(out),
                "--no-progress",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        trees.append(_files(out))
    assert trees[0].keys() == trees[1].keys() and len([n for n in trees[0] if n.endswith(".mp4")]) == 5
    assert not [n for n in trees[0] if trees[0][n] != trees[1][n]]


# Digests (per file kind) of the tiny demo tree of ``TINY``, made on the machine that committed them with
# the pinned imageio-ffmpeg binary and pillow: every x86-64 Linux machine must produce these bytes.
# Recompute them (and say so in the commit) only when a pin moves.
PINNED_FFMPEG = "ffmpeg-linux-x86_64-v9.0.2"
REFERENCE_TREE_DIGESTS = {
    ".csv": "3d7a6f1ec5b58f39e7caa8cf31eef60e",
    ".jpg": "9cd43b6486bdab589721cd23fcaa9e66",
    ".json": "20f3f9d928c953d6dcc3e20e2b294d6c",
    ".mp4": "eaae31079b58fcf00041d6c4e395b856",
    ".png": "edb2993d9ac0eb80f2b30d805aab00c1",
    ".wav": "ff14e07478a888a2ac5d81f63b994c60",
}
_ENCODE_CLIP = """
import hashlib, sys
from pipeline.demo import DemoConfig, build_scene, plan_videos, render_video, synth_audio
from pipeline.media import AUDIO_RATE, encode_video
config = DemoConfig(seed=5, frame_size=(64, 80), num_classes=6, s4_videos=(1, 0, 0), ms3_videos=(0, 0, 0),
                    avss_videos=(0, 0, 0))
scene = build_scene(plan_videos(config, "s4")[0], config)
frames, _ = render_video(scene)
encode_video(sys.argv[1], frames, 25, synth_audio(scene), AUDIO_RATE, crf=23, pinned=True)
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
"""


def _pinned_clip_sha256(out: Path, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _ENCODE_CLIP, str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_pinned_encoding_does_not_depend_on_glibc_math_variants(tmp_path):
    """A pinned encode runs no CPU-specific code of ffmpeg or x264 (``-cpuflags 0``, x264 ``asm=0``),
    and the system libm the pinned ffmpeg links gives the same bytes with its FMA/AVX2/AVX-512
    variants masked (GLIBC_TUNABLES), as on a CPU without them."""
    masked = "glibc.cpu.hwcaps=-AVX512F,-AVX512DQ,-AVX2,-FMA,-FMA4,-AVX"
    first = _pinned_clip_sha256(tmp_path / "a.mp4")
    assert _pinned_clip_sha256(tmp_path / "b.mp4", GLIBC_TUNABLES=masked) == first


def _digests_by_kind(root: Path) -> dict[str, str]:
    """sha256 over (relative path, bytes) of every file of each suffix under ``root``, in path order."""
    kinds: dict[str, object] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = kinds.setdefault(path.suffix or path.name, hashlib.sha256())
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return {kind: digest.hexdigest()[:32] for kind, digest in sorted(kinds.items())}


def test_demo_tree_has_the_reference_bytes(tiny):
    """The cross-machine check of "byte-identical demo files": the tiny tree's mp4, png, jpg, wav,
    csv and json files hash to what they were on another machine (an AVX-512 Intel CPU)."""
    import platform

    from pipeline.media import pinned_ffmpeg_exe

    if Path(pinned_ffmpeg_exe()).name != PINNED_FFMPEG or platform.machine() != "x86_64":
        pytest.skip(f"the reference bytes are those of {PINNED_FFMPEG} on x86-64")
    assert _digests_by_kind(tiny[0]) == REFERENCE_TREE_DIGESTS
