"""``avs predict``: segment the sounding objects of any video with a trained checkpoint.

The new video goes through the very code the pipeline used for training data (``pipeline.media``
extraction, ``pipeline.audio`` features, ``pipeline.proposals`` maskiges), with the settings
recorded in the checkpoint (``feature_params``), so a prediction sees what training saw. One
prediction per second (the frame AVSBench's rule keeps); clips longer than the training window
are processed in windows of that many seconds.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import media
from pipeline.atomic import atomic_path
from train.data import image_tensor, prepare_batch, resize_clip
from train.evaluate import _colourise
from train.loop import build_from_checkpoint, load_checkpoint


def _dataclass_from(cls, mapping: dict[str, Any] | None):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (mapping or {}).items() if k in names})


def compute_features(frames: np.ndarray, audio: np.ndarray, num_seconds: int, feature_params: dict[str, Any],
                     need_maskige: bool) -> dict[str, np.ndarray]:
    """Audio embeddings + log-mel (and maskiges for COMBO) of one clip, with the training settings."""
    from pipeline.audio.features import AudioParams, clip_features, get_encoder

    audio_params = _dataclass_from(AudioParams, feature_params.get("audio"))
    features = clip_features([(audio, num_seconds)], get_encoder(audio_params))[0]
    out = {"embeddings": features["embeddings"], "logmel": features["logmel"]}
    if need_maskige:
        from pipeline.proposals.backends import build_backend
        from pipeline.proposals.config import ProposalParams
        from pipeline.proposals.video import propose_video

        params = ProposalParams.from_mapping({k: v for k, v in (feature_params.get("proposals") or {}).items()
                                              if k in {f.name for f in fields(ProposalParams)}})
        out["maskige"] = propose_video(frames, build_backend(params.backend, params)).maskige
    return out


@torch.no_grad()
def predict_video(video: str | Path, checkpoint: str | Path, out_dir: str | Path, threshold: float = 0.5,
                  window: int = 5, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Write ``out_dir/overlay.mp4`` (one frame per second, prediction drawn over it),
    ``out_dir/masks/second_XXXX.png`` (binary 0/255, or class ids for semantic models) and
    ``out_dir/prediction.json``. ``size``: model input [H, W] (None: the training size, as
    ``evaluate.size``). Returns that summary."""
    video, out_dir = Path(video), Path(out_dir)
    ckpt = load_checkpoint(checkpoint)
    model = build_from_checkpoint(ckpt).eval()
    feature_params = ckpt.get("feature_params") or {}
    train_params = ckpt.get("train_params") or {}
    frame_size = tuple((feature_params.get("extract") or {}).get("frame_size", (224, 224)))
    model_size = tuple(size or train_params.get("size", frame_size))
    info = media.probe(video)
    if not info.has_video:
        raise media.MediaError(f"{video}: no video stream")
    num_seconds = media.seconds_in(info)
    clip = media.extract_clip(video, num_seconds, frame_size, info=info,
                              resize_filter=(feature_params.get("extract") or {}).get("resize_filter", "bilinear"))
    is_combo = ckpt["model_name"].startswith("combo")
    feats = compute_features(clip.frames, clip.audio, num_seconds, feature_params, need_maskige=is_combo)
    audio_key = train_params.get("audio_key", "embeddings")
    predictions = []
    for start in range(0, num_seconds, window):
        stop = min(num_seconds, start + window)
        # The evaluation path: uint8 resize to the model size, then prepare_batch (float + normalisation).
        frames = image_tensor(clip.frames[start:stop])
        maskiges = image_tensor(feats["maskige"][start:stop]) if is_combo else None
        no_masks = torch.zeros(stop - start, 0, 0, dtype=torch.uint8)
        frames, maskiges, _ = resize_clip(frames, maskiges, no_masks, model_size)
        batch = {"frames": frames[None],
                 "audio" if audio_key == "embeddings" else "logmel": torch.from_numpy(feats[audio_key][start:stop])[None],
                 "labelled": torch.zeros(1, stop - start, dtype=torch.bool)}
        if maskiges is not None:
            batch["maskiges"] = maskiges[None]
        probs = model.predict(model(prepare_batch(batch, "cpu")), size=frame_size)[0].float()
        predictions.append((probs > threshold).to(torch.uint8) if model.task == "binary" else probs.argmax(1).to(torch.uint8))
    labels = torch.cat(predictions).numpy()  # [T,H,W]
    binary = model.task == "binary"
    from PIL import Image

    masks_dir = out_dir / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    for second, label in enumerate(labels):
        with atomic_path(masks_dir / f"second_{second:04d}.png", suffix=".png") as tmp:
            Image.fromarray(label * 255 if binary else label).save(tmp)
    colours = np.stack([_colourise(label, binary) for label in labels])
    alpha = np.where(labels > 0, 0.55, 0.0)[..., None]
    overlay = (clip.frames * (1 - alpha) + colours * alpha).astype(np.uint8)
    media.encode_video(out_dir / "overlay.mp4", overlay, fps=1)
    summary = {"video": str(video), "checkpoint": str(checkpoint), "model": ckpt["model_name"], "seconds": num_seconds,
               "frame_indices": clip.frame_indices, "audio_source": clip.audio_source,
               "foreground_fraction_per_second": [round(float((l > 0).mean()), 4) for l in labels]}
    with atomic_path(out_dir / "prediction.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
