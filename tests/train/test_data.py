"""The uint8 data path: augmentation (crop box in source pixels, one box for frame, maskige and mask),
reproducibility, the uint8 evaluation resize, channels-last images through items and collate, reads from
located arrays (also in forked DataLoader workers), and prepare_batch against the float maths it replaced."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.shards import ShardReader, shard_file
from train.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    ClipDataset,
    ClipSource,
    CropBox,
    augmentation_generator,
    collate_clips,
    crop_resize_nearest,
    image_tensor,
    label_tensor,
    prepare_batch,
    resize_clip,
)

CHANNELS_LAST = torch.channels_last


SIZE = 32  # the toy shards' frame size (conftest.py)


def is_channels_last(images: torch.Tensor) -> bool:
    """Dense channels-last memory, [T,3,H,W] by shape (what items hold; a 5-D batch is checked per clip)."""
    return images.dim() == 4 and images.is_contiguous(memory_format=CHANNELS_LAST)


def blocky_clip(T: int = 3, H: int = 40, W: int = 56, seed: int = 0):
    """frames uint8 [T,H,W,3] of flat 8x8 blocks (bilinear and nearest agree away from block edges),
    masks uint8 [T,H,W] with labels 0..3 and 255, and the maskige that encodes each label as a colour."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (T, H // 8, W // 8, 3), dtype=np.uint8)
    frames = blocks.repeat(8, axis=1).repeat(8, axis=2)
    labels = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), (T, H // 4, W // 4))
    masks = labels.repeat(4, axis=1).repeat(4, axis=2)
    maskige = np.stack([masks, 255 - masks, masks // 2], axis=-1).astype(np.uint8)
    return frames, maskige, masks


@pytest.mark.parametrize("size", [(24, 32), (48, 64), (40, 56)])
def test_augmentation_keeps_frame_maskige_and_mask_aligned(size):
    frames, maskige, masks = blocky_clip()
    aug = Augmentation(size, (0.5, 2.0), True, 0.2)
    flips = 0
    for index in range(12):
        gen = augmentation_generator(7, 0, index)
        box, _ = aug.draw(frames.shape[1], frames.shape[2], gen)
        flips += box.flip
        out_f, out_m, out_k, jitter = aug(
            image_tensor(frames), image_tensor(maskige), torch.from_numpy(masks), augmentation_generator(7, 0, index)
        )
        assert out_f.shape == out_m.shape == (3, 3, *size) and out_k.shape == (3, *size)
        assert out_f.dtype == out_m.dtype == out_k.dtype == torch.uint8 and jitter.dtype == torch.float32
        assert is_channels_last(out_f) and is_channels_last(out_m) and out_k.is_contiguous()
        # Maskige and mask share the nearest-neighbour gather: the colour still encodes the label, exactly.
        assert torch.equal(out_m[:, 0], out_k) and torch.equal(out_m[:, 1], 255 - out_k)
        # The bilinear frame sits on the same box: it equals the nearest-neighbour frame except near block edges.
        nearest = crop_resize_nearest(image_tensor(frames), box, size)
        assert (out_f.int() - nearest.int()).abs().gt(2).float().mean() < 0.35
        assert torch.equal(
            out_f, aug(image_tensor(frames), None, torch.from_numpy(masks), augmentation_generator(7, 0, index))[0]
        )
    assert 0 < flips < 12


def test_augmentation_draws_are_those_of_the_resize_then_crop_geometry():
    # Drawn in the same order from the same generator as the resize-then-crop code it replaces.
    aug = Augmentation((32, 32), (0.5, 2.0), True, 0.2)
    for index in range(20):
        gen, box = augmentation_generator(0, 3, index), None
        box, jitter = aug.draw(64, 48, gen)
        ref = augmentation_generator(0, 3, index)
        scale = 0.5 + 1.5 * float(torch.rand((), generator=ref))
        ratio = 32 * scale / 48
        new_h, new_w = max(32, round(64 * ratio)), max(32, round(48 * ratio))
        top = int(torch.randint(0, new_h - 32 + 1, (), generator=ref))
        left = int(torch.randint(0, new_w - 32 + 1, (), generator=ref))
        flip = float(torch.rand((), generator=ref)) < 0.5
        brightness = 1 + (float(torch.rand((), generator=ref)) * 2 - 1) * 0.2
        contrast = 1 + (float(torch.rand((), generator=ref)) * 2 - 1) * 0.2
        assert box.flip == flip and jitter.tolist() == pytest.approx([brightness, contrast])
        assert abs(box.top - top * 64 / new_h) <= 1 and abs(box.left - left * 48 / new_w) <= 1
        assert abs(box.height - 32 * 64 / new_h) <= 0.5 and abs(box.width - 32 * 48 / new_w) <= 0.5
        assert box.top + box.height <= 64 and box.left + box.width <= 48


def test_items_reproducible_by_seed_epoch_index(toy_root):
    def make(seed: int):
        return ClipDataset(
            ["toy"],
            [0],
            "train",
            ClipSource(str(toy_root), size=(SIZE, SIZE)),
            Augmentation((SIZE, SIZE), (0.5, 2.0), True, 0.3),
            seed=seed,
        )

    a, b = make(5), make(5)
    keys = ("frames", "maskiges", "masks", "jitter")
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert all(torch.equal(x[k], y[k]) for k in keys)
    b.set_epoch(1)
    assert any(not torch.equal(a[i]["jitter"], b[i]["jitter"]) for i in range(len(a)))
    a.set_epoch(1)
    assert all(torch.equal(a[i][k], b[i][k]) for i in range(len(a)) for k in keys)
    assert not torch.equal(make(6)[0]["jitter"], a[0]["jitter"])


def test_item_without_augmentation_is_the_stored_clip(toy_root):
    ds = ClipDataset(["toy"], [0], "test", ClipSource(str(toy_root), size=(SIZE, SIZE)))
    item = ds[0]
    assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (3, 3, SIZE, SIZE)
    assert item["frames"][0, :, 10, 5].tolist() == [200, 30, 30]  # the red square: channel is dim 1 by shape
    assert is_channels_last(item["frames"]) and is_channels_last(item["maskiges"])  # ... and last in memory
    assert torch.equal(item["frames"], item["maskiges"]) and item["masks"].dtype == torch.uint8
    assert "jitter" not in item
    with ShardReader(shard_file(toy_root, "toy", "extract", 0)) as extract:  # exactly what is stored
        assert torch.equal(
            item["frames"], torch.from_numpy(extract.read(item["video_id"], "frames")).permute(0, 3, 1, 2)
        )
        assert torch.equal(item["labelled"], torch.from_numpy(extract.read(item["video_id"], "gt_valid")))


def test_resize_clip_uint8_matches_float_resize():
    frames, maskige, masks = blocky_clip(H=48, W=64, seed=3)
    out_f, out_m, out_k = resize_clip(image_tensor(frames), image_tensor(maskige), torch.from_numpy(masks), (24, 40))
    as_float = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    ref_f = F.interpolate(as_float, size=(24, 40), mode="bilinear", align_corners=False)
    ref_m = F.interpolate(torch.from_numpy(maskige).permute(0, 3, 1, 2).float(), size=(24, 40), mode="nearest")
    assert out_f.dtype == torch.uint8 and (out_f.float() - ref_f).abs().max() <= 0.5 + 1e-3  # rounding only
    assert torch.equal(out_m, ref_m.to(torch.uint8))
    assert torch.equal(out_k, torch.from_numpy(masks))  # masks keep their size for scoring
    assert is_channels_last(out_f) and is_channels_last(out_m)
    stored = image_tensor(frames)
    same, _, _ = resize_clip(stored, None, torch.from_numpy(masks), (48, 64))
    assert same.data_ptr() == stored.data_ptr() and torch.equal(same, torch.from_numpy(frames).permute(0, 3, 1, 2))
    # Channels-first input (any strides) gives the same values, channels-last.
    first, _, _ = resize_clip(stored.contiguous(), None, torch.from_numpy(masks), (24, 40))
    assert is_channels_last(first) and torch.equal(first, out_f)


def test_label_tensor_keeps_uint8_when_ids_fit():
    assert label_tensor(np.array([[[0, 255]]], np.uint8)).dtype == torch.uint8
    fits = label_tensor(np.array([[[0, 70, 255]]], np.int64))
    assert fits.dtype == torch.uint8 and fits.tolist() == [[[0, 70, 255]]]
    assert label_tensor(np.array([[[0, 300]]], np.int32)).dtype == torch.int64
    assert label_tensor(np.array([[[-1, 3]]], np.int16)).tolist() == [[[-1, 3]]]


def float_reference(frames_u8: torch.Tensor, jitter: torch.Tensor | None) -> torch.Tensor:
    """The float path the loader used before (per clip): to [0,1], Augmentation's colour jitter, normalise."""
    out = []
    for b, clip in enumerate(frames_u8):
        x = clip.float().div(255.0)
        if jitter is not None:
            brightness, contrast = jitter[b]
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (((x - mean) * contrast + mean) * brightness).clamp(0, 1)
        out.append((x - IMAGENET_MEAN) / IMAGENET_STD)
    return torch.stack(out)


def loader_batch(B: int = 3, T: int = 2, H: int = 16, W: int = 20) -> dict:
    gen = torch.Generator().manual_seed(0)
    return {
        "frames": torch.randint(0, 256, (B, T, 3, H, W), dtype=torch.uint8, generator=gen),
        "maskiges": torch.randint(0, 256, (B, T, 3, H, W), dtype=torch.uint8, generator=gen),
        "masks": torch.randint(0, 2, (B, T, H, W), dtype=torch.uint8, generator=gen),
        "labelled": torch.ones(B, T, dtype=torch.bool),
        "audio": torch.randn(B, T, 8),
        "video_id": ["a", "b", "c"],
    }


def test_prepare_batch_matches_the_float_path_without_jitter():
    batch = loader_batch()
    out = prepare_batch(batch, torch.device("cpu"))
    assert out["frames"].dtype == out["maskiges"].dtype == torch.float32 and out["masks"].dtype == torch.int64
    assert torch.allclose(out["frames"], float_reference(batch["frames"], None), atol=1e-5)
    assert torch.allclose(out["maskiges"], float_reference(batch["maskiges"], None), atol=1e-5)
    assert torch.equal(out["masks"], batch["masks"].long()) and out["video_id"] == ["a", "b", "c"]
    lo, hi = (-IMAGENET_MEAN / IMAGENET_STD).view(3, 1, 1), ((1 - IMAGENET_MEAN) / IMAGENET_STD).view(3, 1, 1)
    assert (out["frames"] >= lo - 1e-5).all() and (out["frames"] <= hi + 1e-5).all()
    assert batch["frames"].dtype == torch.uint8  # the loader batch is left as it was


def test_prepare_batch_applies_per_clip_jitter_like_the_old_augmentation():
    batch = loader_batch()
    batch["jitter"] = torch.tensor([[0.8, 1.2], [1.2, 0.8], [1.0, 1.0]])
    out = prepare_batch(batch, "cpu")
    assert "jitter" not in out
    assert torch.allclose(out["frames"], float_reference(batch["frames"], batch["jitter"]), atol=1e-5)
    assert torch.allclose(out["maskiges"], float_reference(batch["maskiges"], None), atol=1e-5)  # never jittered
    with pytest.raises(TypeError, match="uint8"):
        prepare_batch({**batch, "frames": batch["frames"].float()}, "cpu")


def test_collated_dataset_batch_prepares_to_the_model_format(toy_root):
    ds = ClipDataset(
        ["toy"],
        [0],
        "train",
        ClipSource(str(toy_root), size=(SIZE, SIZE)),
        Augmentation((SIZE, SIZE), (0.5, 2.0), True, 0.2),
        seed=2,
    )
    batch = collate_clips([ds[i] for i in range(2)])
    assert batch["frames"].dtype == torch.uint8 and batch["jitter"].shape == (2, 2)
    out = prepare_batch(batch, "cpu")
    assert out["frames"].shape == (2, 3, 3, SIZE, SIZE) and out["frames"].dtype == torch.float32
    assert out["masks"].dtype == torch.int64 and set(out["masks"].unique().tolist()) <= {0, 1}
    assert torch.allclose(out["maskiges"], float_reference(batch["maskiges"], None), atol=1e-5)


def test_channels_last_items_collate_and_prepare_like_channels_first(toy_root):
    ds = ClipDataset(
        ["toy"],
        [0],
        "train",
        ClipSource(str(toy_root), size=(SIZE, SIZE)),
        Augmentation((SIZE, SIZE), (0.5, 2.0), True, 0.2),
        seed=4,
    )
    items = [ds[i] for i in range(3)]
    batch = collate_clips(items)
    for key in ("frames", "maskiges"):
        stacked = torch.stack([item[key].contiguous() for item in items])  # the channels-first batch of before
        assert torch.equal(batch[key], stacked) and batch[key].shape == (3, 3, 3, SIZE, SIZE)
        assert batch[key].permute(0, 1, 3, 4, 2).is_contiguous()  # one [B,T,H,W,3] block: stacked without transposing
    first = {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    ours, reference = prepare_batch(batch, "cpu"), prepare_batch(first, "cpu")
    for key in ("frames", "maskiges", "masks"):
        assert ours[key].is_contiguous() and torch.equal(ours[key], reference[key])  # transposed on the device


def test_items_from_forked_workers_equal_in_process_items(toy_root):
    # The located arrays cross the fork as plain data; each worker opens its own files, and its batches
    # (collated into shared memory) arrive with the channels-last layout and the same values.
    ds = ClipDataset(
        ["toy"],
        [0],
        "train",
        ClipSource(str(toy_root), size=(SIZE, SIZE)),
        Augmentation((SIZE, SIZE), (0.5, 2.0), True, 0.2),
        seed=1,
    )
    plan = [[0, 1], [2, 3]]
    here = [collate_clips([ds[i] for i in b]) for b in plan]  # the parent opens its files first
    loader = DataLoader(ds, batch_sampler=plan, collate_fn=collate_clips, num_workers=1, multiprocessing_context="fork")
    for ours, theirs in zip(here, loader):
        for key in ("frames", "maskiges", "masks", "labelled", "audio", "jitter"):
            assert torch.equal(ours[key], theirs[key]) and ours[key].stride() == theirs[key].stride()


def test_crop_box_nearest_matches_interpolate_on_the_window():
    frames, _, masks = blocky_clip(seed=1)
    box = CropBox(3, 5, 29, 37, flip=True)
    window = torch.from_numpy(masks)[:, None, 3:32, 5:42].float()
    ref = F.interpolate(window, size=(20, 24), mode="nearest")[:, 0].flip(-1).to(torch.uint8)
    assert torch.equal(crop_resize_nearest(torch.from_numpy(masks), box, (20, 24)), ref)
    grown = F.interpolate(window, size=(50, 61), mode="nearest")[:, 0].flip(-1).to(torch.uint8)
    assert torch.equal(crop_resize_nearest(torch.from_numpy(masks), box, (50, 61)), grown)
    maskige = torch.from_numpy(np.stack([masks] * 3, axis=-1)).permute(0, 3, 1, 2)  # channels-last images
    for out_size, ref_k in (((20, 24), ref), ((50, 61), grown)):
        out_m = crop_resize_nearest(maskige, box, out_size)
        assert is_channels_last(out_m) and all(torch.equal(out_m[:, c], ref_k) for c in range(3))


def test_clips_whose_arrays_disagree_in_length_are_skipped_with_a_reason(tmp_path, toy_shards):
    """A video whose audio covers fewer seconds than its frames is not scored on misaligned audio."""
    from pipeline.shards import ShardReader, ShardWriter, shard_file

    toy_shards(tmp_path)
    audio_path = shard_file(tmp_path, "toy", "audio", 0)
    with ShardReader(audio_path) as reader:
        attrs = reader.file_attrs()
        videos = {vid: {k: reader.read(vid, k) for k in ("embeddings", "logmel")} for vid in reader.video_ids()}
        made_from = {vid: {"source_digest": reader.video_attrs(vid)["source_digest"]} for vid in reader.video_ids()}
    videos["v4"] = {k: v[:-1] for k, v in videos["v4"].items()}  # one second short
    with ShardWriter(
        audio_path,
        kind="audio",
        params_hash="t",
        attrs={k: v for k, v in attrs.items() if k not in ("kind", "params_hash")},
    ) as writer:
        for vid, arrays in videos.items():
            writer.write_video(vid, arrays, made_from[vid])
    ds = ClipDataset(["toy"], [0], "test", ClipSource(str(tmp_path), size=(SIZE, SIZE)))
    assert [c.video_id for c in ds.clips] == ["v5"]
    assert ds.skipped == [("v4", "arrays of different lengths: frames 3, audio 2, maskiges 3, ground truth 3")]
