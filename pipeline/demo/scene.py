"""Demo scenes: object classes (shape, colour, sound parameters), their motion, and rendering.

Every video is 5 s at 25 fps. Coloured shapes (one shape + colour per class) move smoothly over a
random smooth background. Ground truth is rendered from the very geometry that is drawn, at the
frame AVSBench keeps for each second (index ``int(l*25 + 15/16*25)`` = 23, 48, 73, 98, 123).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.media import avsbench_frame_indices

FPS = 25
SECONDS = 5
NUM_FRAMES = FPS * SECONDS
KEY_FRAMES = tuple(avsbench_frame_indices(SECONDS, FPS))  # (23, 48, 73, 98, 123)


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
    DemoClass("blue_square", "square", (40, 80, 230), 1732.0, ((1, 1.0), (2, 0.5), (3, 0.33), (4, 0.25)), pulse_hz=6.0),
    DemoClass("green_triangle", "triangle", (40, 180, 60), 1152.0, ((1, 1.0), (3, 0.45)), pulse_hz=4.0),
    DemoClass("yellow_star", "star", (235, 215, 40), 2592.0, ((1, 1.0), (2, 0.4)), pulse_hz=8.0),
    DemoClass("magenta_diamond", "diamond", (215, 50, 200), 393.0, ((1, 1.0),), pulse_hz=3.0, noise_band=0.03),
    DemoClass("cyan_ring", "ring", (40, 205, 215), 306.0, ((1, 1.0), (3, 0.5)), pulse_hz=0.0),
    DemoClass("orange_cross", "cross", (250, 140, 30), 177.0, ((1, 1.0), (2, 0.6)), pulse_hz=5.0),
    DemoClass("purple_hexagon", "hexagon", (130, 60, 200), 662.0, ((1, 1.0),), pulse_hz=1.0, vibrato=0.012),
)
MAX_CLASSES = len(CLASSES)
MIN_CLASSES = 6  # AVSS-like needs at least 6 semantic classes


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
        return (
            self.home[0] + self.amp[0] * math.sin(2 * math.pi * self.freq[0] * t + self.phase[0]),
            self.home[1] + self.amp[1] * math.sin(2 * math.pi * self.freq[1] * t + self.phase[1]),
        )

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


def background_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
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
        wave = np.sin(
            2 * math.pi * (xx * math.cos(direction) + yy * math.sin(direction)) / period + rng.uniform(0, 2 * math.pi)
        )
        tint = rng.uniform(6, 14) * (1 + rng.uniform(-0.3, 0.3, 3))
        img += wave[..., None] * tint[None, None, :]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def place_objects(
    rng: np.random.Generator, class_ids: list[int], sounding: np.ndarray, height: int, width: int
) -> list[SceneObject]:
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
        objects.append(
            SceneObject(
                class_id=int(cid),
                radius=float(r),
                colour=colour,
                home=(float(home[0]), float(home[1])),
                amp=(float(rng.uniform(0.1, 0.35) * r), float(rng.uniform(0.1, 0.35) * r)),
                freq=(float(rng.uniform(0.08, 0.3)), float(rng.uniform(0.08, 0.3))),
                phase=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
                angle0=float(rng.uniform(0, 2 * math.pi)),
                spin=float(rng.uniform(-0.35, 0.35)),
                gain=float(rng.uniform(0.75, 1.0)),
                pitch=float(rng.uniform(0.985, 1.015)),
                pulse_phase=float(rng.uniform(0, 1)),
                sounding=tuple(bool(b) for b in sounding[k]),
            )
        )
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
