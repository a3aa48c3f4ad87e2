"""Negative-audio evaluation: silence and noise made by the shards' own audio encoder (YAMNet, as the
audio stage ran it), off-screen audio by a seeded category derangement, and the false-positive measures
at their worst for a hand-built model that ignores audio and at their best for one that is silent
under silence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.audio.features import AudioParams
from pipeline.audio.shard import compute_audio_shard
from pipeline.extraction import ExtractParams
from pipeline.feature_record import record_attrs
from pipeline.params import DaskParams
from pipeline.shards import ShardReader, ShardWriter, shard_file
from pipeline.shards.identity import CONTENT_DIGEST, SOURCE_DIGEST
from train.data import ClipDataset, ClipSource
from train.evaluation import EvalParams, evaluate
from train.evaluation.negative_audio import (
    ForegroundTally,
    OffscreenAudio,
    negative_waveform,
    offscreen_donors,
    waveform_features_for,
)
from train.evaluation.scoring import score_dataset

SIZE, T, RATE = 16, 2, 16000
# (video, category, tone Hz; 0 = a silent video, whose stored embeddings are the audio stage's silence)
VIDEOS = [("v0", "dog", 440), ("v1", "dog", 660), ("v2", "car", 880), ("v3", "car", 1320), ("quiet", "dog", 0)]


def write_extract(root: Path, train_copies: bool = False) -> Path:
    """The extract shard: the test videos (a category each) and, with ``train_copies``, a train copy of each."""
    extract = shard_file(root, "neg", "extract", 0)
    attrs = record_attrs("extract", ExtractParams(frame_size=[SIZE, SIZE]))
    videos = [
        (f"{v}{suffix}", c, hz, split) for v, c, hz in VIDEOS for suffix, split in [("", "test"), ("_t", "train")]
    ]
    with ShardWriter(extract, kind="extract", params_hash="t", attrs=attrs) as writer:
        for video_id, category, hz, split in videos if train_copies else [v for v in videos if v[3] == "test"]:
            seconds = np.arange(T * RATE) / RATE
            tone = (8000 * np.sin(2 * np.pi * hz * seconds)).astype(np.int16)
            masks = np.zeros((T, SIZE, SIZE), np.uint8)
            masks[:, 4:12, 4:12] = hz > 0
            arrays = {
                "frames": np.full((T, SIZE, SIZE, 3), 90, np.uint8),
                "audio": tone,
                "gt_masks": masks,
                "gt_valid": np.ones(T, bool),
            }
            writer.write_video(video_id, arrays, {"split": split, "num_seconds": T, "category": category})
    return extract


def write_shards(root: Path, train_copies: bool = False) -> None:
    """The extract shard and its audio shard made by the real audio stage (YAMNet)."""
    extract = write_extract(root, train_copies)
    audio_path = shard_file(root, "neg", "audio", 0)
    compute_audio_shard(extract, audio_path, AudioParams(), DaskParams(n_workers=0), progress=False)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("negative")
    write_shards(root)
    return root


def stored_embeddings(root: Path, video_id: str) -> np.ndarray:
    with ShardReader(shard_file(root, "neg", "audio", 0)) as reader:
        return reader.read(video_id, "embeddings")


class AudioGatedModel(nn.Module):
    """A hand-built binary model: every pixel sounding with probability 1 when the clip's audio embedding
    differs from ``silence`` [D] (beyond ``tol``), else 0; with ``silence`` None it ignores the audio and
    marks every pixel sounding."""

    task = "binary"
    inputs = ("frames", "audio")

    def __init__(self, silence: np.ndarray | None = None, tol: float = 1e-3) -> None:
        super().__init__()
        self.silence = None if silence is None else torch.from_numpy(silence).float()
        self.tol = tol

    def forward(self, batch: dict) -> dict:
        return {"audio": batch["audio"]}

    def predict(self, outputs: dict, size: tuple[int, int]) -> torch.Tensor:
        audio = outputs["audio"]  # [B,T,D]
        if self.silence is None:
            sounding = torch.ones(audio.shape[:2])
        else:
            sounding = ((audio - self.silence).abs().amax(-1) > self.tol).float()
        return sounding[..., None, None].expand(*audio.shape[:2], *size)


def dataset_of(root: Path, audio_key: str = "embeddings") -> ClipDataset:
    source = ClipSource(data_root=str(root), audio_key=audio_key, maskige=False, size=(SIZE, SIZE))
    return ClipDataset(["neg"], [0], "test", source)


def negative_measures(model: nn.Module, root: Path) -> dict:
    cfg = EvalParams(datasets=["neg"], overlays=0)
    return score_dataset(model, "neg", dataset_of(root), cfg, torch.device("cpu"), progress=False).entry[
        "negative_audio"
    ]


def test_silence_and_noise_are_the_encoders_features_not_zeros(shards):
    features, reason = waveform_features_for(dataset_of(shards), seed=0)
    assert reason == "" and features is not None
    silence = features("silence", T)
    assert silence.shape == (T, 1024) and np.abs(silence).max() > 0.01  # YAMNet's silence is not a zero vector
    # the same numbers the audio stage stored for the silent video
    np.testing.assert_allclose(silence, stored_embeddings(shards, "quiet"), atol=1e-5)
    noise = features("noise", T)
    assert np.abs(noise - silence).max() > 0.01
    assert features("noise", T) is noise  # computed once per run, then cached
    again, _ = waveform_features_for(dataset_of(shards), seed=0)
    np.testing.assert_array_equal(again("noise", T), noise)  # seeded
    rms = np.sqrt(np.mean((negative_waveform("noise", T, 0) / 32767) ** 2))
    assert rms == pytest.approx(0.1, rel=0.02)  # -20 dBFS


def test_logmel_models_get_the_front_ends_silence(shards):
    features, reason = waveform_features_for(dataset_of(shards, "logmel"), seed=0)
    assert reason == ""
    with ShardReader(shard_file(shards, "neg", "audio", 0)) as reader:
        stored = reader.read("quiet", "logmel")
    np.testing.assert_allclose(features("silence", T), stored, atol=1e-5)


def test_a_model_that_ignores_audio_is_at_the_worst_values(shards):
    measures = negative_measures(AudioGatedModel(silence=None), shards)
    for condition in ("silence", "noise", "offscreen"):
        assert measures[condition]["pred_frame_fraction"] == pytest.approx(1.0)
        assert measures[condition]["pred_area_ratio"] == pytest.approx(1.0)
        assert measures[condition]["frames"] == len(VIDEOS) * T


def test_a_model_silent_under_silence_is_at_the_best_values(shards):
    model = AudioGatedModel(silence=stored_embeddings(shards, "quiet")[0])
    measures = negative_measures(model, shards)
    assert measures["silence"]["pred_frame_fraction"] == pytest.approx(0.0, abs=1e-9)
    assert measures["silence"]["pred_area_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert measures["noise"]["pred_frame_fraction"] == pytest.approx(1.0)  # noise is not silence
    # with their own audio, four of the five videos sound (the quiet one is the reference silence)
    assert measures["own"]["pred_frame_fraction"] == pytest.approx(4 / 5)


def test_offscreen_audio_comes_from_another_category(shards):
    dataset = dataset_of(shards)
    offscreen = OffscreenAudio(dataset, seed=0)
    ids = [c.video_id for c in dataset.clips]
    category = {video_id: cat for video_id, cat, _ in VIDEOS}
    pairs = [(ids[i], ids[d]) for i, d in enumerate(offscreen.donors)]
    assert sorted(d for d in offscreen.donors) == list(range(len(ids)))  # every clip's audio used once
    # 3 dogs of 5: one dog must hear a dog, and the count says so
    assert sum(category[a] == category[b] for a, b in pairs) == offscreen.same_category == 1
    assert all(a != b for a, b in pairs)
    item = offscreen[0]
    donor_audio = stored_embeddings(shards, ids[offscreen.donors[0]])
    np.testing.assert_allclose(item["audio"].numpy(), donor_audio)
    assert OffscreenAudio(dataset, seed=0).donors == offscreen.donors  # seeded


def test_offscreen_donors_avoid_their_own_category_when_possible():
    rng = np.random.default_rng(1)
    for trial in range(100):
        n = int(rng.integers(2, 10))
        categories = [str(c) for c in rng.choice(list("abcd"), n)]
        donors = offscreen_donors(categories, [5] * n, trial)
        assert sorted(donors) == list(range(n)) and all(d != i for i, d in enumerate(donors))
        if max(categories.count(c) for c in categories) <= n / 2:
            assert all(categories[d] != categories[i] for i, d in enumerate(donors))
    assert offscreen_donors(["a", "b", "a"], [5, 5, 10], 0)[2] is None  # no other clip of that length


def test_an_encoder_that_cannot_be_rebuilt_skips_silence_and_noise(tmp_path, capsys):
    """VGGish whose checkpoint is not on this machine: one line, the reason recorded, the rest scored."""
    root = tmp_path / "vggish"
    extract = write_extract(root)
    record = record_attrs("audio", AudioParams(encoder="vggish", checkpoint="vggish-10086976.pth"))
    with ShardReader(extract) as made:
        digests = {vid: made.video_attrs(vid)[CONTENT_DIGEST] for vid in made.video_ids()}
    with ShardWriter(shard_file(root, "neg", "audio", 0), kind="audio", params_hash="t", attrs=record) as writer:
        for video_id, _, _ in VIDEOS:
            made_from = {"num_seconds": T, SOURCE_DIGEST: digests[video_id]}  # as the audio stage binds it
            writer.write_video(video_id, {"embeddings": np.zeros((T, 128), np.float32)}, made_from)
    measures = negative_measures(AudioGatedModel(silence=None), root)
    for condition in ("silence", "noise"):
        assert "audio encoder 'vggish' cannot be rebuilt" in measures[condition]["skipped"]
        assert "vggish-10086976.pth" in measures[condition]["skipped"]
    assert measures["offscreen"]["pred_frame_fraction"] == pytest.approx(1.0)
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(lines) == 2 and all(line.startswith("evaluate neg: negative audio") for line in lines)


def test_foreground_tally_measures():
    tally = ForegroundTally()
    labels = torch.zeros(4, 10, 10, dtype=torch.uint8)
    labels[0, :5] = 1  # half of frame 0
    labels[1, 0, 0] = 3  # one pixel of frame 1 (semantic id)
    tally.add("d/a", labels)
    m = tally.compute()
    assert m["frames"] == 4 and m["pred_frame_fraction"] == pytest.approx(0.5)
    assert m["pred_area_ratio"] == pytest.approx((0.5 + 0.01) / 4)


def test_evaluate_reports_every_condition(tmp_path, toy_params):
    """A TransAVS checkpoint trained one step on these YAMNet shards, evaluated end to end: every
    condition in metrics.json, per_video.csv, the report's table and one strip per condition."""
    from train.loop import train

    params = toy_params(model="transavs_tiny", datasets=["neg"], size=[SIZE, SIZE], max_steps=1, batch_size=2)
    root = tmp_path / "shards"
    write_shards(root, train_copies=True)
    result = train(params, str(root), [0], tmp_path / "run", progress=False)
    metrics = evaluate(result["final"], EvalParams(datasets=["neg"], overlays=2), str(root), [0], tmp_path / "eval")
    negative = metrics["neg"]["negative_audio"]
    assert all("pred_area_ratio" in negative[c] for c in ("own", "shuffled", "silence", "noise", "offscreen"))
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert [s["condition"] for s in report["negative_strips"]] == ["silence", "noise", "offscreen"]
    assert "off-screen audio" in (tmp_path / "eval" / "report.html").read_text()
