"""Demo planning: which videos each flavour has, which classes they show, which seconds sound.

Everything is drawn from ``DemoConfig.seed`` through seed sequences keyed by (flavour, split,
index), so a video does not depend on which other videos or flavours are generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.demo.scene import CLASSES, MAX_CLASSES, MIN_CLASSES, SECONDS, Scene, background_image, place_objects

FLAVOURS = ("s4", "ms3", "avss")
SPLITS = ("train", "val", "test")
_FLAVOUR_CODE = {"s4": 1, "ms3": 2, "avss": 3}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}


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
            raise ValueError(
                f"DemoConfig.num_classes must be in [{MIN_CLASSES}, {MAX_CLASSES}]; got {self.num_classes}"
            )
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
            plans.append(
                VideoPlan(flavour, split, i, name, category, classes, sounding, seed=(config.seed, fcode, scode, i + 1))
            )
    return plans


def build_scene(plan: VideoPlan, config: DemoConfig) -> Scene:
    rng = _rng(*plan.seed, 2)
    height, width = config.frame_size
    background = background_image(rng, height, width)
    objects = place_objects(rng, plan.class_ids, plan.sounding, height, width)
    return Scene(background=background, objects=objects, noise_seed=int(rng.integers(2**63 - 1)))
