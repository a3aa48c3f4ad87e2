"""``avs predict``: segment the sounding objects of any video with a trained checkpoint.

The new video goes through the very code the pipeline used for training data (``pipeline.media``
extraction, ``pipeline.audio`` features, ``pipeline.proposals`` maskiges), with the feature-stage
params recorded in the checkpoint (:mod:`pipeline.feature_record`, read back strictly), so a
prediction sees what training saw. One prediction per second (the frame AVSBench's rule keeps),
in windows of ``window`` seconds; the model runs at the size it was scored at (``train.inference_size``
recorded in the checkpoint) and its masks are resized back to the video's own resolution.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import media
from pipeline.atomic import atomic_path
from pipeline.params import from_section
from train.checkpoint import feature_params_of, load_model, scoring_size
from train.data import image_tensor, resize_clip
from train.device import inference_device
from train.official_combo import OFFICIAL_FORMAT, OFFICIAL_TEST_SIZE, ModelFlags
from train.outputs import predict_labels
from train.overlay import draw_mask

OVERLAY_MAX_SIDE = 640  # overlay video: the video's aspect ratio, longest side at most this
DECODE_SECONDS = 60  # seconds decoded at a time (memory: one such window at the extract and display sizes)


@dataclass
class Predictor:
    """A trained model and the feature settings it was trained with."""

    model: nn.Module
    features: dict[str, Any]  # kind -> params dataclass (extract, audio, proposals when the model reads maskiges)
    model_size: tuple[int, int]  # model input [H, W]
    checkpoint: Path
    model_name: str
    device: torch.device = torch.device("cpu")


def load_predictor(
    checkpoint: str | Path,
    size: tuple[int, int] | None = None,
    proposals_override: dict[str, Any] | None = None,
    device: str | None = None,
    model_flags: ModelFlags | None = None,
    features_file: str | Path | None = None,
) -> Predictor:
    """Model + strict feature records of ``checkpoint``; ``proposals_override`` replaces recorded proposal
    settings (with a warning: the maskiges then differ from those the model was trained on). ``device``:
    see :func:`train.device.inference_device` (None: CUDA when available, as ``avs evaluate``).
    ``model_flags``: see :func:`train.checkpoint.load_checkpoint`. ``features_file``: a params.yaml whose
    extract / audio / proposals sections replace the records (an official COMBO checkpoint has none:
    without it, COMBO's published features, :func:`published_combo_features`)."""
    import pipeline.audio.features  # noqa: F401 - register the params classes of the feature records
    import pipeline.extraction  # noqa: F401
    import pipeline.proposals.config  # noqa: F401

    checkpoint, torch_device = Path(checkpoint), inference_device(device)
    model, ckpt = load_model(checkpoint, torch_device, model_flags)
    kinds = ("extract", "audio", "proposals") if "maskiges" in model.inputs else ("extract", "audio")
    if features_file is not None:
        features = features_from_params_file(features_file, kinds)
        if "feature_params" in ckpt:
            print(f"predict: warning: {features_file} replaces the feature records of {checkpoint}", file=sys.stderr)
    elif "feature_params" not in ckpt and ckpt.get("source_format") == OFFICIAL_FORMAT:
        features = published_combo_features(model, checkpoint, proposals_override)
        proposals_override = None  # applied to the published settings, which no training recorded
    else:
        features = feature_params_of(ckpt, checkpoint, kinds)
    if proposals_override:
        features["proposals"] = _override_proposals(features.get("proposals"), proposals_override)
    train_params = ckpt.get("train_params") or {}
    model_size = tuple(scoring_size(train_params, size))
    return Predictor(model, features, model_size, checkpoint, ckpt["model_name"], torch_device)


def features_from_params_file(path: str | Path, kinds: tuple[str, ...]) -> dict[str, Any]:
    """kind -> params dataclass of each feature stage in ``kinds``, from that section of the params file
    ``path`` (validated as the stages validate it; a missing section takes the stage's defaults)."""
    from pipeline.feature_record import params_class
    from pipeline.params import load_params

    sections = load_params(path)
    return {kind: from_section(params_class(kind), sections.get(kind), f"{path}: {kind}") for kind in kinds}


# Semantic-SAM's released SwinL weights, the file COMBO's maskiges were made with.
SEMANTIC_SAM_WEIGHTS = "swinl_only_sam_many2many.pth"


def published_combo_features(
    model: nn.Module, checkpoint: Path, proposals_override: dict[str, Any] | None
) -> dict[str, Any]:
    """The features of COMBO's published checkpoints, for an official file that records none: 224x224
    frames (AVSBench's), VGGish log-mel examples (the VGGish inside the model reads them; the audio
    section's own encoder output is not used) and Semantic-SAM maskiges with COMBO's settings, whose
    weights file is ``proposals_override["checkpoint"]`` (there is no default: one line says what to pass)."""
    from pipeline.audio.features import AudioParams
    from pipeline.extraction import ExtractParams
    from pipeline.proposals.config import ProposalParams

    if "logmel" not in model.inputs:
        raise ValueError(
            f"{checkpoint}: an official COMBO checkpoint without its VGGish reads precomputed audio embeddings: "
            "pass --features PARAMS.yaml whose audio section names the encoder"
        )
    proposals = {"backend": "semantic_sam", "cache_dir": "", **(proposals_override or {})}
    weights = proposals.get("checkpoint")
    if proposals["backend"] == "semantic_sam" and (weights is None or not Path(weights).is_file()):
        raise ValueError(
            f"{checkpoint}: an official COMBO checkpoint records no features; its maskiges are Semantic-SAM's: "
            f"pass --proposals '{{checkpoint: {SEMANTIC_SAM_WEIGHTS}}}' with that file"
            f"{f' ({weights} is not a file)' if weights else ''}, or --features PARAMS.yaml"
        )
    return {
        "extract": ExtractParams(frame_size=list(OFFICIAL_TEST_SIZE)),
        "audio": AudioParams(),
        "proposals": from_section(ProposalParams, proposals, "--proposals"),
    }


def _override_proposals(recorded: Any, override: dict[str, Any]) -> Any:
    if recorded is None:
        raise ValueError("this model reads no maskiges: proposal settings cannot be overridden")
    params = from_section(type(recorded), {**dataclasses.asdict(recorded), **override}, "--proposals")
    changed = sorted(k for k in override if getattr(params, k) != getattr(recorded, k))
    if changed:
        print(
            f"predict: warning: proposal settings {changed} differ from training; maskiges will differ from "
            f"those the model learnt on",
            file=sys.stderr,
        )
    return params


def clip_features(
    predictor: Predictor, frames: np.ndarray, audio: np.ndarray, num_seconds: int, progress: bool = False
) -> dict[str, np.ndarray]:
    """The model's inputs for one clip, computed as the feature stages computed them: ``audio`` (embeddings
    [T,D]) or ``logmel`` [T,96,64], and ``maskige`` uint8 [T,H,W,3] for models that read maskiges."""
    from pipeline.audio.features import clip_features as audio_features
    from pipeline.audio.features import get_encoder

    audio_params = predictor.features["audio"]
    computed = audio_features([(audio, num_seconds)], get_encoder(audio_params))[0]
    out = {"audio": computed["embeddings"], "logmel": computed["logmel"]}
    if "proposals" in predictor.features:
        from pipeline.proposals.backends import cached_backend
        from pipeline.proposals.cache import propose_video

        params = predictor.features["proposals"]
        backend = cached_backend(params)
        out["maskige"] = propose_video(frames, backend, progress=progress).maskige
    return out


@torch.no_grad()
def predict_window(
    predictor: Predictor, frames: np.ndarray, features: dict[str, np.ndarray], threshold: float
) -> np.ndarray:
    """Labels uint8 [T,H,W] at the frames' size for one window: frames uint8 [T,H,W,3] at the extract
    size, ``features`` from :func:`clip_features` (sliced to the window)."""
    model = predictor.model
    images = image_tensor(frames)
    maskiges = image_tensor(features["maskige"]) if "maskiges" in model.inputs else None
    no_masks = torch.zeros(frames.shape[0], 0, 0, dtype=torch.uint8)
    images, maskiges, _ = resize_clip(images, maskiges, no_masks, predictor.model_size)
    batch: dict[str, Any] = {"frames": images[None], "labelled": torch.zeros(1, frames.shape[0], dtype=torch.bool)}
    for key in ("audio", "logmel"):
        if key in model.inputs:
            batch[key] = torch.from_numpy(features[key])[None]
    if maskiges is not None:
        batch["maskiges"] = maskiges[None]
    return predict_labels(model, batch, predictor.device, frames.shape[1:3], threshold)[1][0].numpy()


def overlay_size(height: int, width: int, max_side: int = OVERLAY_MAX_SIDE) -> tuple[int, int]:
    """(H, W) with the video's aspect ratio, longest side <= ``max_side``, both even (H.264)."""
    scale = min(1.0, max_side / max(height, width))
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T,h,w] -> [T,H,W] nearest neighbour (class ids stay ids)."""
    tensor = torch.from_numpy(labels)[:, None].float()
    return torch.nn.functional.interpolate(tensor, size=size, mode="nearest")[:, 0].to(torch.uint8).numpy()


def write_masks(labels: np.ndarray, out_dir: Path, first_second: int, binary: bool) -> None:
    """One PNG per second at the video's resolution: binary 0/255, or class ids."""
    from PIL import Image

    masks_dir = out_dir / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    for offset, label in enumerate(labels):
        with atomic_path(masks_dir / f"second_{first_second + offset:04d}.png", suffix=".png") as tmp:
            Image.fromarray(label * 255 if binary else label).save(tmp)


def draw_overlay(frames: np.ndarray, labels: np.ndarray, binary: bool) -> np.ndarray:
    """frames uint8 [T,H,W,3] with the prediction ``labels`` [T,H,W] drawn over them (tint + outline,
    :func:`train.overlay.draw_mask`)."""
    return np.stack([draw_mask(frame, label, binary) for frame, label in zip(frames, labels)])


def predict_video(
    video: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    threshold: float = 0.5,
    window: int = 5,
    size: tuple[int, int] | None = None,
    proposals_override: dict[str, Any] | None = None,
    progress: bool = False,
    device: str | None = None,
    model_flags: ModelFlags | None = None,
    features_file: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/overlay.mp4`` (one frame per second, the video's aspect ratio), ``out_dir/masks/
    second_XXXX.png`` (the video's resolution; binary 0/255 or class ids) and ``out_dir/prediction.json``.
    The video is decoded ``window`` seconds at a time (memory holds one window, whatever the length);
    each window's audio features are computed as for a training clip of that length.
    ``size``: model input [H, W] (None: the checkpoint's inference size); ``device``: see
    :func:`train.device.inference_device`; ``model_flags``, ``features_file``: see :func:`load_predictor`.
    Returns that summary."""
    from tqdm.auto import tqdm

    video, out_dir = media.check_local_media_path(video), Path(out_dir)
    predictor = load_predictor(checkpoint, size, proposals_override, device, model_flags, features_file)
    limit = getattr(predictor.model, "max_frames", None)
    if limit is not None and window > limit:
        raise ValueError(f"--window {window}: this {predictor.model_name} model takes clips of at most {limit} s")
    info = media.probe(video)
    if not info.has_video:
        raise media.MediaError(f"{video}: no video stream")
    num_seconds = media.seconds_in(info)
    binary = predictor.model.task == "binary"
    shown = overlay_size(info.height, info.width)
    record = {"frame_indices": [], "foreground_fraction_per_second": [], "warnings": []}
    bar = tqdm(total=num_seconds, desc=f"predict {video.name}", unit="s", disable=not progress)

    def overlay_chunks():
        for clip, display in _windows(video, info, num_seconds, predictor, window, shown):
            labels = np.concatenate(
                [_predict_clip(predictor, part, threshold, record) for part in _model_windows(clip, window)]
            )
            full = _resize_labels(labels, (info.height, info.width))
            write_masks(full, out_dir, clip.start, binary)
            record["foreground_fraction_per_second"] += [round(float((f > 0).mean()), 4) for f in full]
            bar.update(len(labels))
            yield draw_overlay(display.frames, _resize_labels(labels, shown), binary)

    media.encode_video(out_dir / "overlay.mp4", overlay_chunks(), fps=1)
    bar.close()
    summary = {
        "video": str(video),
        "checkpoint": str(checkpoint),
        "model": predictor.model_name,
        "seconds": num_seconds,
        "model_size": list(predictor.model_size),
        "device": str(predictor.device),
        **record,
    }
    with atomic_path(out_dir / "prediction.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


def _windows(video: Path, info: Any, num_seconds: int, predictor: Predictor, window: int, shown: tuple[int, int]):
    """(model-size window, display-size window) pairs: two decodes of the same seconds, a decode window
    (a whole number of model windows of ``window`` seconds, about a minute) at a time."""
    extract = predictor.features["extract"]
    decode = window * max(1, DECODE_SECONDS // window)
    model_side = media.iter_clip_windows(
        video,
        num_seconds,
        tuple(extract.frame_size),
        window_seconds=decode,
        info=info,
        resize_filter=extract.resize_filter,
        missing_audio=extract.missing_audio,
    )
    display_side = media.iter_clip_windows(
        video, num_seconds, shown, window_seconds=decode, info=info, with_audio=False
    )
    return zip(model_side, display_side)


def _model_windows(clip: Any, window: int):
    """Split a decoded window into the clips the model is called on (``window`` seconds each)."""
    for offset in range(0, clip.frames.shape[0], window):
        frames = clip.frames[offset : offset + window]
        audio = clip.audio[offset * media.AUDIO_RATE : (offset + frames.shape[0]) * media.AUDIO_RATE]
        real = min(max(0, clip.audio_samples - offset * media.AUDIO_RATE), audio.size)
        yield dataclasses.replace(
            clip,
            start=clip.start + offset,
            frames=frames,
            audio=audio,
            audio_samples=real,
            frame_indices=clip.frame_indices[offset : offset + window],
        )


def _predict_clip(predictor: Predictor, clip: Any, threshold: float, record: dict[str, list]) -> np.ndarray:
    """Labels uint8 [w,H,W] (extract size) of one window, its audio treated as the extract stage treats it."""
    from pipeline.extraction import apply_short_audio

    seconds = clip.frames.shape[0]
    audio, warning = apply_short_audio(
        clip.audio, clip.audio_samples, seconds, predictor.features["extract"].short_audio
    )
    if warning:
        record["warnings"].append(f"seconds {clip.start}-{clip.start + seconds}: {warning}")
    features = clip_features(predictor, clip.frames, audio, seconds)
    record["frame_indices"] += list(clip.frame_indices)
    return predict_window(predictor, clip.frames, features, threshold)
