"""Training, exact resume and evaluation over small shards written with the real shard API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from train.data import Augmentation, ClipDataset, ClipSource, LengthGroupedSampler
from train.evaluate import EvalParams, evaluate
from train.loop import load_checkpoint, train

SIZE = 32  # the toy shards' frame size (conftest.py)


def test_dataset_items_and_same_geometry(toy_root):
    ds = ClipDataset(
        ["toy"],
        [0],
        "train",
        ClipSource(str(toy_root), size=(SIZE, SIZE)),
        Augmentation((SIZE, SIZE), (0.8, 1.5), True, 0.0),
        seed=1,
    )
    assert len(ds) == 4
    item = ds[0]
    assert item["frames"].shape == (3, 3, SIZE, SIZE) and item["maskiges"].shape == (3, 3, SIZE, SIZE)
    assert item["frames"].dtype == item["maskiges"].dtype == item["masks"].dtype == torch.uint8
    channels_last = torch.channels_last  # dense, channels-last in memory (the stored order); [T,3,H,W] by shape
    assert item["frames"].is_contiguous(memory_format=channels_last) and item["maskiges"].is_contiguous(
        memory_format=channels_last
    )
    assert item["masks"].shape == (3, SIZE, SIZE) and item["audio"].shape == (3, 16)
    assert "jitter" not in item  # colour_jitter 0
    again = ds[0]
    assert torch.equal(item["frames"], again["frames"])  # augmentation is a function of (seed, epoch, index)


def test_flip_and_crop_move_frame_maskige_and_mask_together(toy_root):
    # Scale 1 and no jitter: only crop + flip, so the toy maskige (a copy of the frame) stays equal to
    # the frame, and every ground-truth pixel still lands on a coloured square.
    ds = ClipDataset(
        ["toy"],
        [0],
        "train",
        ClipSource(str(toy_root), size=(SIZE, SIZE)),
        Augmentation((SIZE, SIZE), (1.0, 1.0), True, 0.0),
        seed=0,
    )
    flipped = 0
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["frames"], item["maskiges"])
        background = (item["frames"] == item["frames"][:, :, :1, :1]).all(1)  # [T,H,W]
        assert not (background & (item["masks"] == 1)).any()
        ds_plain = ClipDataset(["toy"], [0], "train", ClipSource(str(toy_root), size=(SIZE, SIZE)))
        flipped += int(not torch.equal(item["masks"], ds_plain[i]["masks"]))
    assert flipped > 0  # the flip really happened for some clips


def test_sampler_groups_lengths_and_splits_ranks():
    lengths = [5, 10, 5, 10, 5, 5, 10, 10]
    batches = list(LengthGroupedSampler(lengths, 2, seed=0))
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)
    r0 = list(LengthGroupedSampler(lengths, 2, seed=0, rank=0, world_size=2))
    r1 = list(LengthGroupedSampler(lengths, 2, seed=0, rank=1, world_size=2))
    assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}


def test_resume_gives_identical_losses(toy_root, tmp_path, toy_params):
    full = train(toy_params(), str(toy_root), [0], tmp_path / "full", progress=False)
    first = train(toy_params(), str(toy_root), [0], tmp_path / "split", progress=False, stop_after=2)
    assert first["final"] is None and len(first["losses"]) == 2
    second = train(toy_params(), str(toy_root), [0], tmp_path / "split", resume=True, progress=False)
    assert second["steps"] == 4
    assert first["losses"] + second["losses"] == pytest.approx(full["losses"], abs=1e-6, rel=1e-6)
    ckpt = load_checkpoint(tmp_path / "full" / "model.pt")
    assert ckpt["step"] == 4 and ckpt["model_name"] == "combo_tiny"
    log = (tmp_path / "split" / "log" / "plots" / "metrics" / "train" / "loss_total.tsv").read_text().splitlines()
    assert len(log) == 5 and log[0].split("\t") == ["step", "loss_total"]  # dvclive: header + steps 1-4


def test_evaluate_writes_metrics_overlays_and_shuffle(toy_root, tmp_path, toy_params):
    result = train(toy_params(max_steps=2), str(toy_root), [0], tmp_path / "run", progress=False)
    metrics = evaluate(result["final"], EvalParams(datasets=["toy"], overlays=1), str(toy_root), [0], tmp_path / "eval")
    entry = metrics["toy"]
    assert 0 <= entry["M_J"] <= 1 and 0 <= entry["M_F"] <= 1 and entry["num_videos"] == 2
    assert "shuffled_audio" in entry and "audio_dependence" in entry
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["toy"]["M_J"] == entry["M_J"]
    assert len(list((tmp_path / "eval" / "overlays").glob("*.png"))) == 1
    assert (tmp_path / "eval" / "per_video.csv").read_text().count("\n") == 3


def test_evaluate_at_another_input_size(toy_root, tmp_path, toy_params):
    """evaluate.size scores a model at a different input size than it was trained at (masks come back
    at the ground-truth size either way)."""
    result = train(toy_params(max_steps=2), str(toy_root), [0], tmp_path / "run", progress=False)
    metrics = evaluate(
        result["final"],
        EvalParams(datasets=["toy"], overlays=0, shuffle_audio=False, size=[2 * SIZE, 2 * SIZE]),
        str(toy_root),
        [0],
        tmp_path / "eval",
    )
    assert 0 <= metrics["toy"]["M_J"] <= 1 and metrics["toy"]["num_videos"] == 2


def test_semantic_evaluation_writes_the_per_class_iou_table(tmp_path, toy_params, toy_shards):
    """A semantic (AVSS-style) run: per_class_iou.csv, the source of the per-class IoU bar chart
    (dvc.yaml plots), has one row per class present in the test ground truth or prediction."""
    root = tmp_path / "shards"
    toy_shards(root, dataset="toy_sem")
    result = train(
        toy_params(datasets=["toy_sem"], task="semantic", max_steps=2), str(root), [0], tmp_path / "run", progress=False
    )
    metrics = evaluate(
        result["final"],
        EvalParams(datasets=["toy_sem"], overlays=1, shuffle_audio=False),
        str(root),
        [0],
        tmp_path / "eval",
    )
    assert 0 <= metrics["toy_sem"]["mIoU"] <= 1
    rows = (tmp_path / "eval" / "per_class" / "per_class_iou.csv").read_text().splitlines()
    assert rows[0] == "dataset,class_id,iou"
    classes = {int(r.split(",")[1]): float(r.split(",")[2]) for r in rows[1:]}
    # toy ground truth has background and class 1; a class only predicted counts too (IoU 0), as in AVSBench
    assert {0, 1} <= set(classes) and all(0 <= v <= 1 for v in classes.values())
    assert all(v == 0 for c, v in classes.items() if c not in (0, 1))


@pytest.mark.parametrize("model", ["combo_tiny", "transavs_tiny"])
def test_both_models_train_and_evaluate_through_the_same_loop(toy_root, tmp_path, model, toy_params):
    """`-S train.model=transavs` goes through the same data, loop and evaluation code as COMBO
    (TransAVS reads no maskiges)."""
    result = train(toy_params(model=model, max_steps=2), str(toy_root), [0], tmp_path / "run", progress=False)
    assert len(result["losses"]) == 2 and all(np.isfinite(result["losses"]))
    assert load_checkpoint(result["final"])["model_name"] == model
    metrics = evaluate(
        result["final"],
        EvalParams(datasets=["toy"], overlays=0, shuffle_audio=False),
        str(toy_root),
        [0],
        tmp_path / "eval",
    )
    assert 0 <= metrics["toy"]["M_J"] <= 1


def test_a_fresh_run_clears_checkpoints_of_an_earlier_run(toy_root, tmp_path, toy_params):
    stale = tmp_path / "run" / "checkpoints" / "step-0000900.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from another run")
    train(toy_params(max_steps=2), str(toy_root), [0], tmp_path / "run", progress=False)
    assert not stale.exists()
    assert all(int(p.stem.split("-")[1]) <= 2 for p in stale.parent.glob("step-*.pt"))  # this run's only


def test_only_the_newest_intermediate_checkpoints_are_kept(toy_root, tmp_path, toy_params):
    train(
        toy_params(max_steps=6, checkpoint_every=1, keep_checkpoints=2),
        str(toy_root),
        [0],
        tmp_path / "run",
        stop_after=5,
        progress=False,
    )
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert kept == ["step-0000004.pt", "step-0000005.pt"]


def test_evaluate_with_nothing_to_score_exits_1(toy_root, tmp_path, toy_params, capsys):
    """A split with no clips gives no metrics: the stage says so and does not exit 0."""
    import yaml

    from stages.cli import main

    result = train(toy_params(max_steps=1), str(toy_root), [0], tmp_path / "run", progress=False)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {"data": {"root": str(toy_root)}, "evaluate": {"datasets": ["toy"], "split": "val", "overlays": 0}}
        )
    )
    code = main(
        [
            "evaluate",
            "--params",
            str(params),
            "--checkpoint",
            str(result["final"]),
            "--out",
            str(tmp_path / "eval"),
            "--no-progress",
        ]
    )
    assert code == 1 and "nothing was scored: no 'val' clip" in capsys.readouterr().err
