"""Synthetic demo dataset: real mp4 videos + ground truth in the three AVSBench layouts.

Every video is 5 s at 25 fps with 16 kHz mono audio. Coloured shapes (one shape + colour per
class) move smoothly over a random smooth background; each class has its own sound (pitch,
timbre, pulse rate) and a second's audio is the mix of the sounds of the objects sounding in
that second. Several classes are always visible and which of them sound is drawn independently
of how they look, so the sounding object cannot be found from pixels alone.

Ground truth is the visible pixels (z-order respected) of the sounding objects at the frame
AVSBench keeps for each second (index ``int(l*25 + 15/16*25)`` = 23, 48, 73, 98, 123), rendered
from the very geometry that is drawn.

Layouts written under ``out_dir`` (the layouts :mod:`pipeline.manifest` reads):

``s4/``   ``s4_meta_data.csv`` (name, start_time, category, split),
          ``raw_videos/{split}/{category}/{name}.mp4``,
          ``gt_masks/{split}/{category}/{name}/{name}_{k}.png`` (k = 1..5; train: k = 1 only), {0,255}
``ms3/``  ``ms3_meta_data.csv`` (video_id, split), ``raw_videos/{video_id}.mp4``,
          ``gt_masks/{split}/{video_id}/{video_id}_{k}.png`` (k = 1..5), {0,255}
``avss/`` ``metadata.csv`` (uid, label in v1s/v1m, split), ``classes.csv`` (id, name; 0 = background),
          ``{label}/{uid}/raw_video.mp4``, ``{label}/{uid}/labels_rgb/{i}.png`` (i = 0..4, VOC palette;
          v1s train: i = 0 only)

plus ``demo_truth.json`` (per video: objects, classes, sounding seconds) and ``demo_summary.json``.
Everything is generated from ``DemoConfig.seed``: the same config gives identical files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from pipeline.manifest import voc_palette
from pipeline.media import AUDIO_RATE, avsbench_frame_indices, encode_video

FPS = 25
SECONDS = 5
NUM_FRAMES = FPS * SECONDS
KEY_FRAMES = tuple(avsbench_frame_indices(SECONDS, FPS))  # (23, 48, 73, 98, 123)
FLAVOURS = ("s4", "ms3", "avss")
SPLITS = ("train", "val", "test")
VIDEO_CRF = 23  # x264's default quality: flat synthetic content stays clean, ~20% less CPU than 18
_FLAVOUR_CODE = {"s4": 1, "ms3": 2, "avss": 3}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}


# --------------------------------------------------------------------------------------------
# Classes: how each one looks and sounds
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoClass:
    """One object class: a shape + colour and a sound.

    ``harmonics`` are (multiple of f0, relative amplitude). The fundamentals were chosen so that no
    harmonic of any class lies within ~10% of another class's fundamental (so the energy around
    each f0 tells which classes sound). ``noise_band`` > 0 replaces the tone by band-limited noise
    of that relative half-width around f0; ``vibrato`` is the relative depth of a 5 Hz pitch wobble;
    ``pulse_hz`` is the rhythm (0 = steady).
    """

    name: str
    shape: str
    colour: tuple[int, int, int]
    f0: float
    harmonics: tuple[tuple[int, float], ...]
    pulse_hz: float
    noise_band: float = 0.0
    vibrato: float = 0.0


CLASSES: tuple[DemoClass, ...] = (
    DemoClass("red_circle", "circle", (220, 40, 40), 231.0, ((1, 1.0),), pulse_hz=2.0),
    DemoClass("blue_square", "square", (40, 80, 230), 1732.0, ((1, 1.0), (2, 0.5), (3, 0.33), (4, 0.25)),
              pulse_hz=6.0),
    DemoClass("green_triangle", "triangle", (40, 180, 60), 1152.0, ((1, 1.0), (3, 0.45)), pulse_hz=4.0),
    DemoClass("yellow_star", "star", (235, 215, 40), 2592.0, ((1, 1.0), (2, 0.4)), pulse_hz=8.0),
    DemoClass("magenta_diamond", "diamond", (215, 50, 200), 393.0, ((1, 1.0),), pulse_hz=3.0, noise_band=0.03),
    DemoClass("cyan_ring", "ring", (40, 205, 215), 306.0, ((1, 1.0), (3, 0.5)), pulse_hz=0.0),
    DemoClass("orange_cross", "cross", (250, 140, 30), 177.0, ((1, 1.0), (2, 0.6)), pulse_hz=5.0),
    DemoClass("purple_hexagon", "hexagon", (130, 60, 200), 662.0, ((1, 1.0),), pulse_hz=1.0, vibrato=0.012),
)
MAX_CLASSES = len(CLASSES)
MIN_CLASSES = 6  # AVSS-like needs at least 6 semantic classes


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
@dataclass
class DemoConfig:
    """What the demo dataset contains. Counts are (train, val, test) videos per flavour.

    The defaults (140 videos x 5 key frames) keep ``make demo`` within about 20 minutes on 2 CPU
    cores; S4 test is the largest test split because its metric matters most.
    """

    seed: int = 0
    frame_size: tuple[int, int] = (224, 224)  # (H, W), both even (yuv420p)
    num_classes: int = 8
    s4_videos: tuple[int, int, int] = (48, 12, 16)
    ms3_videos: tuple[int, int, int] = (20, 6, 10)
    avss_videos: tuple[int, int, int] = (14, 6, 8)

    def __post_init__(self) -> None:
        self.frame_size = tuple(int(v) for v in self.frame_size)  # YAML gives lists
        if len(self.frame_size) != 2 or min(self.frame_size) < 32 or any(v % 2 for v in self.frame_size):
            raise ValueError(f"DemoConfig.frame_size must be (H, W), both even and >= 32; got {self.frame_size}")
        if not MIN_CLASSES <= int(self.num_classes) <= MAX_CLASSES:
            raise ValueError(f"DemoConfig.num_classes must be in [{MIN_CLASSES}, {MAX_CLASSES}]; "
                             f"got {self.num_classes}")
        for name in ("s4_videos", "ms3_videos", "avss_videos"):
            counts = tuple(int(v) for v in getattr(self, name))
            if len(counts) != 3 or min(counts) < 0:
                raise ValueError(f"DemoConfig.{name} must be 3 non-negative counts (train, val, test); got {counts}")
            setattr(self, name, counts)

    def counts(self, flavour: str) -> dict[str, int]:
        """Videos per split of ``flavour``."""
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown demo flavour {flavour!r}; choose from {FLAVOURS}")
        return dict(zip(SPLITS, getattr(self, f"{flavour}_videos")))


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------
@dataclass
class SceneObject:
    """One object of a video: its class, look, trajectory and sound parameters."""

    class_id: int  # index into CLASSES (semantic id = class_id + 1)
    radius: float  # px
    colour: tuple[int, int, int]
    home: tuple[float, float]  # (y, x) px
    amp: tuple[float, float]  # trajectory amplitude (y, x) px
    freq: tuple[float, float]  # Hz
    phase: tuple[float, float]
    angle0: float  # rad
    spin: float  # rad/s
    gain: float  # loudness when sounding
    pitch: float  # multiplicative pitch jitter
    pulse_phase: float
    sounding: tuple[bool, ...]  # per second

    def centre(self, t: float) -> tuple[float, float]:
        return (self.home[0] + self.amp[0] * math.sin(2 * math.pi * self.freq[0] * t + self.phase[0]),
                self.home[1] + self.amp[1] * math.sin(2 * math.pi * self.freq[1] * t + self.phase[1]))

    def angle(self, t: float) -> float:
        return self.angle0 + self.spin * t


@dataclass
class Scene:
    background: np.ndarray  # uint8 [H,W,3]
    objects: list[SceneObject]  # in drawing order (later objects occlude earlier ones)
    noise_seed: int


def _regular_polygon(rho: np.ndarray, phi: np.ndarray, n: int, radius: float) -> np.ndarray:
    sector = 2 * math.pi / n
    psi = np.mod(phi + sector / 2, sector) - sector / 2
    return rho * np.cos(psi) <= radius * math.cos(math.pi / n)


def _star(rho: np.ndarray, phi: np.ndarray, points: int, radius: float, inner: float) -> np.ndarray:
    half = math.pi / points
    psi = np.abs(np.mod(phi, 2 * half) - half)  # 0: between two points, half: at a point
    px, py = rho * np.cos(psi), rho * np.sin(psi)
    dx, dy = radius * math.cos(half) - inner, radius * math.sin(half)
    return dx * py - dy * (px - inner) >= 0


def shape_mask(shape: str, radius: float, angle: float, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Inside-test of a shape centred at the origin, rotated by ``angle``.

    ``dy`` [h,1] and ``dx`` [1,w] are pixel-centre offsets from the shape centre; returns bool [h,w].
    """
    c, s = math.cos(angle), math.sin(angle)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    if shape == "circle":
        return u * u + v * v <= radius * radius
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= radius * radius) & (r2 >= (0.5 * radius) ** 2)
    if shape == "diamond":
        return np.abs(u) / (1.1 * radius) + np.abs(v) / (0.7 * radius) <= 1.0
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        arm = 0.32 * radius
        return ((au <= arm) & (av <= radius)) | ((av <= arm) & (au <= radius))
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    if shape == "square":
        return _regular_polygon(rho, phi, 4, 1.1 * radius)
    if shape == "triangle":
        return _regular_polygon(rho, phi, 3, 1.3 * radius)
    if shape == "hexagon":
        return _regular_polygon(rho, phi, 6, radius)
    if shape == "star":
        return _star(rho, phi, 5, 1.25 * radius, 0.5 * radius)
    raise ValueError(f"unknown demo shape {shape!r}")


_EXTENT = 1.3  # every shape fits in a disc of _EXTENT * radius


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth low-saturation gradient + two soft plane-wave textures (static per video)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cols = []
    for _ in range(2):
        grey = rng.uniform(60, 190)
        cols.append(np.clip(grey + rng.uniform(-30, 30, 3), 0, 255))
    theta = rng.uniform(0, 2 * math.pi)
    proj = xx * math.cos(theta) + yy * math.sin(theta)
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
    img = cols[0][None, None, :] * (1 - t[..., None]) + cols[1][None, None, :] * t[..., None]
    scale = min(height, width) / 224.0
    for _ in range(2):
        period = rng.uniform(35, 110) * scale
        direction = rng.uniform(0, 2 * math.pi)
        wave = np.sin(2 * math.pi * (xx * math.cos(direction) + yy * math.sin(direction)) / period
                      + rng.uniform(0, 2 * math.pi))
        tint = rng.uniform(6, 14) * (1 + rng.uniform(-0.3, 0.3, 3))
        img += wave[..., None] * tint[None, None, :]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _place_objects(rng: np.random.Generator, class_ids: list[int], sounding: np.ndarray,
                   height: int, width: int) -> list[SceneObject]:
    """Objects of the given classes at well-separated home positions, in random drawing order.

    ``sounding`` is bool [n_objects, SECONDS]. Size, colour, motion and drawing order are drawn
    without looking at ``sounding`` so that nothing visual tells which object sounds.
    """
    base = 0.105 * min(height, width)
    radii = [base * rng.uniform(0.85, 1.15) for _ in class_ids]
    homes: list[tuple[float, float]] = []
    for r in radii:
        margin = _EXTENT * r + 0.35 * r + 1
        best, best_gap = None, -math.inf
        for _ in range(60):
            cand = (rng.uniform(margin, height - margin), rng.uniform(margin, width - margin))
            gap = min((math.dist(cand, h) - 1.05 * (r + hr) for h, hr in zip(homes, radii)), default=math.inf)
            if gap >= 0:
                best = cand
                break
            if gap > best_gap:
                best, best_gap = cand, gap
        homes.append(best)
    objects = []
    for k, (cid, r, home) in enumerate(zip(class_ids, radii, homes)):
        base_colour = np.array(CLASSES[cid].colour, np.float64)
        colour = tuple(int(v) for v in np.clip(base_colour + rng.uniform(-18, 18, 3), 0, 255))
        objects.append(SceneObject(
            class_id=int(cid), radius=float(r), colour=colour, home=(float(home[0]), float(home[1])),
            amp=(float(rng.uniform(0.1, 0.35) * r), float(rng.uniform(0.1, 0.35) * r)),
            freq=(float(rng.uniform(0.08, 0.3)), float(rng.uniform(0.08, 0.3))),
            phase=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
            angle0=float(rng.uniform(0, 2 * math.pi)), spin=float(rng.uniform(-0.35, 0.35)),
            gain=float(rng.uniform(0.75, 1.0)), pitch=float(rng.uniform(0.985, 1.015)),
            pulse_phase=float(rng.uniform(0, 1)), sounding=tuple(bool(b) for b in sounding[k])))
    order = rng.permutation(len(objects))
    return [objects[i] for i in order]


def render_video(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Draw all frames and the object-index maps of the key frames.

    Returns frames uint8 [125,H,W,3] and ids uint8 [5,H,W] (0 = background, k+1 = visible pixel of
    ``scene.objects[k]``), both from the same inside-tests, so ground truth matches the drawing.
    """
    height, width, _ = scene.background.shape
    frames = np.broadcast_to(scene.background, (NUM_FRAMES, height, width, 3)).copy()
    ids = np.zeros((SECONDS, height, width), np.uint8)
    key_of = {f: i for i, f in enumerate(KEY_FRAMES)}
    for f in range(NUM_FRAMES):
        t = f / FPS
        frame = frames[f]
        for k, obj in enumerate(scene.objects):
            cy, cx = obj.centre(t)
            reach = _EXTENT * obj.radius + 1
            y0, y1 = max(0, int(math.floor(cy - reach))), min(height, int(math.ceil(cy + reach)) + 1)
            x0, x1 = max(0, int(math.floor(cx - reach))), min(width, int(math.ceil(cx + reach)) + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]  # [h,1]
            dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]  # [1,w]
            inside = shape_mask(CLASSES[obj.class_id].shape, obj.radius, obj.angle(t), dy, dx)
            frame[y0:y1, x0:x1][inside] = obj.colour
            if f in key_of:
                ids[key_of[f], y0:y1, x0:x1][inside] = k + 1
    return frames, ids


# --------------------------------------------------------------------------------------------
# Sound
# --------------------------------------------------------------------------------------------
def class_sound(cls: DemoClass, rng: np.random.Generator, pitch: float = 1.0, pulse_phase: float = 0.0,
                rate: int = AUDIO_RATE, seconds: int = SECONDS) -> np.ndarray:
    """float64 [seconds*rate], RMS 1 (before the rhythm envelope): the class's own sound."""
    n = seconds * rate
    t = np.arange(n) / rate
    f0 = cls.f0 * pitch
    if cls.noise_band > 0:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / rate)
        spectrum[np.abs(freqs - f0) > cls.noise_band * f0] = 0
        tone = np.fft.irfft(spectrum, n)
    else:
        inst = f0 * (1 + cls.vibrato * np.sin(2 * math.pi * 5.0 * t))
        phase = 2 * math.pi * np.cumsum(inst) / rate
        tone = np.zeros(n)
        for mult, amp in cls.harmonics:
            if mult * f0 < 0.45 * rate:  # never alias
                tone += amp * np.sin(mult * phase + rng.uniform(0, 2 * math.pi))
    tone /= max(float(np.sqrt(np.mean(tone**2))), 1e-9)
    if cls.pulse_hz > 0:  # percussive pulses: fast attack, exponential decay, floor 0.15
        frac = np.mod(t * cls.pulse_hz + pulse_phase, 1.0)
        env = 0.15 + 0.85 * np.exp(-4.0 * frac) * (1 - np.exp(-frac * 150.0))
        tone *= env / np.sqrt(np.mean(env**2))
    return tone


def _gate(sounding: Iterable[bool], rate: int) -> np.ndarray:
    """Per-sample on/off from per-second flags with 10 ms raised-cosine ramps centred on the
    second boundaries (no clicks)."""
    flags = np.asarray(list(sounding), np.float64)
    ramp = 0.01
    knots_t, knots_v = [0.0], [flags[0]]
    for sec in range(1, flags.size):
        if flags[sec] != flags[sec - 1]:
            knots_t += [sec - ramp / 2, sec + ramp / 2]
            knots_v += [flags[sec - 1], flags[sec]]
    knots_t.append(float(flags.size))
    knots_v.append(flags[-1])
    linear = np.interp(np.arange(flags.size * rate) / rate, knots_t, knots_v)
    return 0.5 - 0.5 * np.cos(np.pi * linear)  # 0 and 1 stay exact; ramps become raised cosines


def synth_audio(scene: Scene, rate: int = AUDIO_RATE) -> np.ndarray:
    """int16 [SECONDS*rate]: the mix of the sounding objects' sounds, second by second, + light noise."""
    mix = np.zeros(SECONDS * rate)
    for k, obj in enumerate(scene.objects):
        if any(obj.sounding):
            rng = np.random.default_rng([scene.noise_seed, k + 1])
            sound = class_sound(CLASSES[obj.class_id], rng, obj.pitch, obj.pulse_phase, rate)
            mix += 0.12 * obj.gain * sound * _gate(obj.sounding, rate)
    mix += 0.004 * np.random.default_rng([scene.noise_seed, 0]).standard_normal(mix.size)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.95:
        mix *= 0.95 / peak
    return np.round(mix * 32767).astype(np.int16)


# --------------------------------------------------------------------------------------------
# Planning: which videos, which classes, which seconds sound
# --------------------------------------------------------------------------------------------
@dataclass
class VideoPlan:
    flavour: str
    split: str
    index: int
    name: str
    category: str  # S4: sounding class name; AVSS: v1s / v1m; MS3: ""
    class_ids: list[int]  # visible classes
    sounding: np.ndarray  # bool [n_objects, SECONDS]
    seed: tuple[int, ...] = field(default_factory=tuple)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def _single_source(rng: np.random.Generator, sounding_class: int, num_classes: int) -> tuple[list[int], np.ndarray]:
    """S4 / v1s: the sounding class + 1..3 silent ones of other classes, in random order."""
    others = [c for c in range(num_classes) if c != sounding_class]
    n_silent = int(rng.integers(1, 4))
    silent = [int(c) for c in rng.choice(others, size=n_silent, replace=False)]
    classes = [sounding_class, *silent]
    perm = rng.permutation(len(classes))
    classes = [classes[i] for i in perm]
    sounding = np.zeros((len(classes), SECONDS), bool)
    sounding[classes.index(sounding_class)] = True
    return classes, sounding


def _multi_source(rng: np.random.Generator, num_classes: int) -> tuple[list[int], np.ndarray]:
    """MS3 / v1m: 3-4 objects of distinct classes; each second a non-empty proper subset sounds
    (so some visible object is always silent), changing over the clip."""
    n = int(rng.integers(3, 5))
    classes = [int(c) for c in rng.choice(num_classes, size=n, replace=False)]
    sounding = np.zeros((n, SECONDS), bool)
    previous: frozenset[int] | None = None
    for sec in range(SECONDS):
        while True:
            size = int(rng.integers(1, min(3, n - 1) + 1))
            subset = frozenset(int(i) for i in rng.choice(n, size=size, replace=False))
            keep = previous is not None and rng.uniform() < 0.25
            if keep:
                subset = previous
            if sec == 0 or subset != previous or keep:
                break
        sounding[list(subset), sec] = True
        previous = subset
    if all((sounding[:, 0] == sounding[:, s]).all() for s in range(1, SECONDS)):
        # never a constant set: move the last second to a different subset
        silent = int(np.flatnonzero(~sounding[:, -1])[0])
        sounding[:, -1] = False
        sounding[silent, -1] = True
    return classes, sounding


def plan_videos(config: DemoConfig, flavour: str) -> list[VideoPlan]:
    """Every video of one flavour, in (train, val, test) order; deterministic from the config."""
    plans = []
    fcode = _FLAVOUR_CODE[flavour]
    for split, count in config.counts(flavour).items():
        scode = _SPLIT_CODE[split]
        split_rng = _rng(config.seed, fcode, scode, 0)
        # single-source videos: sounding classes balanced over the split, in shuffled order
        cycle = [int(c) for c in split_rng.permutation(np.resize(np.arange(config.num_classes), count))]
        for i in range(count):
            rng = _rng(config.seed, fcode, scode, i + 1, 1)
            if flavour == "s4":
                classes, sounding = _single_source(rng, cycle[i], config.num_classes)
                name = f"demo_s4_{split}_{i:04d}"
                category = CLASSES[cycle[i]].name
            elif flavour == "ms3":
                classes, sounding = _multi_source(rng, config.num_classes)
                name, category = f"demo_ms3_{split}_{i:04d}", ""
            else:
                label = "v1s" if i % 2 == 0 else "v1m"
                if label == "v1s":
                    classes, sounding = _single_source(rng, cycle[i], config.num_classes)
                else:
                    classes, sounding = _multi_source(rng, config.num_classes)
                name, category = f"demo_avss_{label}_{split}_{i:04d}", label
            plans.append(VideoPlan(flavour, split, i, name, category, classes, sounding,
                                   seed=(config.seed, fcode, scode, i + 1)))
    return plans


def build_scene(plan: VideoPlan, config: DemoConfig) -> Scene:
    rng = _rng(*plan.seed, 2)
    height, width = config.frame_size
    background = _background(rng, height, width)
    objects = _place_objects(rng, plan.class_ids, plan.sounding, height, width)
    return Scene(background=background, objects=objects, noise_seed=int(rng.integers(2**63 - 1)))


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _paths(root: Path, plan: VideoPlan) -> tuple[Path, list[tuple[int, Path]]]:
    """Video path and (second, label path) of every labelled second."""
    name, split = plan.name, plan.split
    if plan.flavour == "s4":
        video = root / "s4" / "raw_videos" / split / plan.category / f"{name}.mp4"
        secs = [0] if split == "train" else list(range(SECONDS))
        folder = root / "s4" / "gt_masks" / split / plan.category / name
        return video, [(s, folder / f"{name}_{s + 1}.png") for s in secs]
    if plan.flavour == "ms3":
        video = root / "ms3" / "raw_videos" / f"{name}.mp4"
        folder = root / "ms3" / "gt_masks" / split / name
        return video, [(s, folder / f"{name}_{s + 1}.png") for s in range(SECONDS)]
    folder = root / "avss" / plan.category / name
    secs = [0] if (split == "train" and plan.category == "v1s") else list(range(SECONDS))
    return folder / "raw_video.mp4", [(s, folder / "labels_rgb" / f"{s}.png") for s in secs]


_PALETTE = voc_palette(256)


def _make_video(root: Path, config: DemoConfig, plan: VideoPlan) -> dict:
    scene = build_scene(plan, config)
    frames, ids = render_video(scene)
    audio = synth_audio(scene)
    video_path, labels = _paths(root, plan)
    encode_video(video_path, frames, FPS, audio, AUDIO_RATE, crf=VIDEO_CRF)
    for sec, path in labels:
        sounding_ids = [k + 1 for k, obj in enumerate(scene.objects) if obj.sounding[sec]]
        visible = np.isin(ids[sec], sounding_ids)
        if plan.flavour == "avss":
            lut = np.zeros(256, np.uint8)
            for k, obj in enumerate(scene.objects):
                if obj.sounding[sec]:
                    lut[k + 1] = obj.class_id + 1
            _write_png(path, _PALETTE[lut[ids[sec]]])
        else:
            _write_png(path, np.where(visible, 255, 0).astype(np.uint8))
    return {
        "split": plan.split,
        "category": plan.category,
        "video": video_path.relative_to(root).as_posix(),
        "labelled_seconds": [s for s, _ in labels],
        "objects": [{"class": CLASSES[o.class_id].name, "class_id": o.class_id, "draw_order": k,
                     "sounding": list(o.sounding)} for k, o in enumerate(scene.objects)],
        "sounding_classes": [sorted(CLASSES[o.class_id].name for o in scene.objects if o.sounding[s])
                             for s in range(SECONDS)],
    }


def _write_meta(root: Path, flavour: str, plans: list[VideoPlan], num_classes: int) -> None:
    if flavour == "s4":
        _write_csv(root / "s4" / "s4_meta_data.csv", ["name", "start_time", "category", "split"],
                   [[p.name, 0, p.category, p.split] for p in plans])
    elif flavour == "ms3":
        _write_csv(root / "ms3" / "ms3_meta_data.csv", ["video_id", "split"], [[p.name, p.split] for p in plans])
    else:
        _write_csv(root / "avss" / "metadata.csv", ["uid", "label", "split"],
                   [[p.name, p.category, p.split] for p in plans])
        _write_csv(root / "avss" / "classes.csv", ["id", "name"],
                   [[0, "background"]] + [[c + 1, CLASSES[c].name] for c in range(num_classes)])


def _iter_results(fn, items: list, workers: int) -> Iterator:
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:  # ffmpeg runs in subprocesses
        yield from pool.map(fn, items)


def generate_demo(out_dir: str | Path, config: DemoConfig, flavours: Iterable[str] = FLAVOURS,
                  progress: bool = True, workers: int = 1) -> dict:
    """Write the demo dataset to ``out_dir`` (replaced as a whole) and return a summary.

    Everything is written to a temporary sibling folder that is renamed into place at the end, so
    a crash leaves no partial dataset. ``workers`` > 1 encodes videos in parallel threads; the
    files do not depend on it. Summary: ``{"counts": {flavour: {split: n}}, "num_videos",
    "num_label_images", "elapsed_s", "out_dir"}``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    flavours = tuple(flavours)
    for fl in flavours:
        if fl not in FLAVOURS:
            raise ValueError(f"unknown demo flavour {fl!r}; choose from {FLAVOURS}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        jobs: list[VideoPlan] = []
        for fl in flavours:
            plans = plan_videos(config, fl)
            (tmp / fl).mkdir()
            _write_meta(tmp, fl, plans, config.num_classes)
            jobs.extend(plans)
        results = _iter_results(lambda p: _make_video(tmp, config, p), jobs, workers)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(jobs), desc="demo videos", unit="video")
        truth: dict[str, dict] = {fl: {} for fl in flavours}
        num_labels = 0
        for plan, info in zip(jobs, results):
            truth[plan.flavour][plan.name] = info
            num_labels += len(info["labelled_seconds"])
        counts = {fl: config.counts(fl) for fl in flavours}
        summary = {"counts": counts, "num_videos": len(jobs), "num_label_images": num_labels,
                   "out_dir": str(out_dir)}
        (tmp / "demo_truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True))
        meta = {"config": asdict(config), "flavours": list(flavours), "counts": counts,
                "classes": [{"id": c, "name": CLASSES[c].name, "shape": CLASSES[c].shape,
                             "colour": list(CLASSES[c].colour), "f0_hz": CLASSES[c].f0,
                             "pulse_hz": CLASSES[c].pulse_hz} for c in range(config.num_classes)],
                "fps": FPS, "seconds": SECONDS, "audio_rate": AUDIO_RATE, "key_frames": list(KEY_FRAMES)}
        (tmp / "demo_summary.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    summary["elapsed_s"] = round(time.perf_counter() - start, 2)
    return summary
