"""Golden outputs of the official Semantic-SAM code, for tests/pipeline/test_semantic_sam*.py.

Run by anyone who has the official sources (nothing official is committed here)::

    git clone https://github.com/UX-Decoder/Semantic-SAM     # has configs/semantic_sam_only_sa-1b_swinL.yaml
    git clone https://github.com/MaureenZOU/detectron2-xyz           # the fork Semantic-SAM installs; no build needed
    pip install torch torchvision "fvcore<0.1.6" "iopath<0.1.10" yacs pycocotools omegaconf timm einops \
        opencv-python-headless pillow==9.4.0 scipy matplotlib kornia transformers json_tricks scikit-image \
        cloudpickle
    python tools/semantic_sam_golden.py --semantic-sam Semantic-SAM --detectron2 detectron2-xyz

It writes ``tests/fixtures/semantic_sam/golden_tiny.npz`` (a seeded random-weight model in the
reduced configuration ``TINY``: its weights, a frame, backbone features, encoder outputs, decoder
masks and IoU scores, and the automatic mask generator's masks) and ``swinl_keys.json`` (every
state-dict key and shape of the full SwinL model). Every model it builds is fully randomised
(:func:`randomise_weights`: every norm, box-refinement layer, deformable offset and attention-weight
layer too), because the official initialisation leaves those at zero or the identity and a port
that got them wrong would still match. Run-time patches, because the official code
assumes CUDA: an empty ``MultiScaleDeformableAttention`` module (so ``MSDeformAttn`` takes its
pure-PyTorch path), ``.cuda()``/``.to('cuda')`` as no-ops, no pretrained Swin download.
``--bench`` instead times the official generator on the SwinL model (benchmarks/bench_semantic_sam.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.atomic import atomic_path, write_text  # noqa: E402
from pipeline.proposals.semantic_sam.config import TINY, SemanticSamConfig  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "semantic_sam"
SEED = 1234
FRAME_SIZE = (100, 140)  # h, w: not a multiple of 32 (padding) nor of the Swin window
DECODER_POINTS = 6  # decoder fixture: this many prompts decoded together, all 6 tokens
# The bench (not the fixture) scales the mask head's last layer by MASK_GAIN (a power of two, so still
# float16-exact) and sets the IoU head's bias, so that random SwinL weights give masks at COMBO's filters.
MASK_GAIN = 16.0
BENCH_IOU_BIAS = 0.875
# Random weights give soft, alike masks (every query's mask embedding shares one component) and raw IoU
# scores around -0.8: the fixture's generator decodes all 6 levels (COMBO: level 3 only; this also checks
# the level -> token order) with looser filters (IoU > -0.8, stability offset 0.5, NMS 0.99), so that a
# dozen masks survive.
GEN = {
    "points_per_side": 12,
    "points_per_batch": 48,
    "pred_iou_thresh": -0.8,
    "stability_score_thresh": 0.6,
    "stability_score_offset": 0.5,
    "box_nms_thresh": 0.99,
    "min_mask_region_area": 10,
    "level": [1, 2, 3, 4, 5, 6],
}


def patch_for_cpu() -> None:
    sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    to = torch.Tensor.to

    def to_cpu(self, *args, **kwargs):
        args = tuple("cpu" if (isinstance(a, str) and a.startswith("cuda")) else a for a in args)
        if isinstance(kwargs.get("device"), str) and kwargs["device"].startswith("cuda"):
            kwargs["device"] = "cpu"
        return to(self, *args, **kwargs)

    torch.Tensor.to = to_cpu


def official_opt(ssam: Path, cfg: SemanticSamConfig | None) -> dict:
    from utils.arguments import load_opt_from_config_file

    opt = load_opt_from_config_file(str(ssam / "configs" / "semantic_sam_only_sa-1b_swinL.yaml"))
    opt["MODEL"]["BACKBONE"]["LOAD_PRETRAINED"] = False
    if cfg is not None:
        swin = opt["MODEL"]["BACKBONE"]["SWIN"]
        swin.update(
            EMBED_DIM=cfg.embed_dim, DEPTHS=list(cfg.depths), NUM_HEADS=list(cfg.num_heads), WINDOW_SIZE=cfg.window_size
        )
        opt["MODEL"]["ENCODER"].update(
            CONVS_DIM=cfg.conv_dim, MASK_DIM=cfg.mask_dim, TRANSFORMER_ENC_LAYERS=cfg.enc_layers
        )
        opt["MODEL"]["DECODER"].update(
            HIDDEN_DIM=cfg.conv_dim, DEC_LAYERS=cfg.dec_layers, DIM_FEEDFORWARD=cfg.dim_feedforward, NHEADS=cfg.nheads
        )
    return opt


def build_official(ssam: Path, cfg: SemanticSamConfig | None):
    from semantic_sam import build_model
    from semantic_sam.BaseModel import BaseModel

    torch.manual_seed(SEED)
    model = BaseModel(official_opt(ssam, cfg), build_model(official_opt(ssam, cfg))).eval()
    randomise_weights(model.model, SEED)
    with torch.no_grad():  # weights exactly representable in float16, so the fixture stores them at half size
        for tensor in model.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return model


def random_range(module: torch.nn.Module, module_name: str, name: str, tensor: torch.Tensor) -> tuple[float, float]:
    """The uniform range for one tensor of the official model: wide enough that nothing is the identity
    or zero (the official initialisation zeroes the box refinement and the deformable offset / weight
    layers and makes every norm the identity, so a port that skipped them would pass), narrow enough
    that activations stay finite and the offsets mostly sample inside the feature maps."""
    fan_in_bound = (3.0 / max(1, tensor[0].numel())) ** 0.5 if tensor.dim() >= 2 else 0.0  # std 1/sqrt(fan_in)
    if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
        return (0.5, 1.5) if name == "weight" else (-0.2, 0.2)
    if module_name.endswith("sampling_offsets"):  # offsets of about +-1 pixel (2-d references) or 1/n_points box
        return (-0.5 * fan_in_bound, 0.5 * fan_in_bound) if name == "weight" else (-1.0, 1.0)
    if module_name.endswith("attention_weights"):  # softmax logits of about +-1: far from uniform
        return (-fan_in_bound, fan_in_bound) if name == "weight" else (-0.5, 0.5)
    if isinstance(module, torch.nn.Embedding) or name in ("relative_position_bias_table", "level_embed"):
        return (-1.0, 1.0)
    if tensor.dim() >= 2:  # linear / conv / attention projections
        return (-fan_in_bound, fan_in_bound)
    return (-0.2, 0.2)  # biases


def randomise_weights(model: torch.nn.Module, seed: int) -> None:
    """Draw every floating parameter and persistent buffer of ``model`` from :func:`random_range` with a
    generator seeded by ``seed``; integer buffers (Swin's relative position index) are structure, not
    weights. Raises if a floating state-dict entry was left out."""
    gen = torch.Generator().manual_seed(seed)
    drawn: set[int] = set()
    with torch.no_grad():
        for module_name, module in model.named_modules():  # shared modules (box refinement) come once
            tensors = list(module.named_parameters(recurse=False)) + [
                (n, b) for n, b in module.named_buffers(recurse=False) if n not in module._non_persistent_buffers_set
            ]
            for name, tensor in tensors:
                if tensor.is_floating_point() and tensor.data_ptr() not in drawn:
                    low, high = random_range(module, module_name, name, tensor)
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) * (high - low) + low)
                    drawn.add(tensor.data_ptr())
    left = [k for k, v in model.state_dict().items() if v.is_floating_point() and v.data_ptr() not in drawn]
    if left:
        raise RuntimeError(f"not randomised: {left}")


def test_frame() -> np.ndarray:
    """uint8 [h,w,3]: flat regions (shapes) plus mild noise, deterministic."""
    h, w = FRAME_SIZE
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    frame = np.zeros((h, w, 3), np.float32) + (40, 60, 90)
    frame[(yy - 45) ** 2 + (xx - 40) ** 2 < 25**2] = (220, 60, 40)
    frame[15:60, 80:130] = (50, 200, 80)
    frame[70:95, 20:120] = (240, 230, 200)
    frame += rng.normal(0, 6, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def official_features(core, frame: np.ndarray):
    """(image [3,H,W] float, {"backbone_*", "encoder_*"} arrays, mask features, multi-scale features) of the
    official model ``core`` on ``frame`` uint8 [H,W,3]."""
    from detectron2.structures import ImageList

    image = torch.from_numpy(frame).permute(2, 0, 1).float()
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        x = ImageList.from_tensors([(image - core.pixel_mean) / core.pixel_std], core.size_divisibility).tensor
        feats = core.backbone(x)
        out.update({f"backbone_{k}": v.numpy() for k, v in feats.items()})
        mask_features, _, multi_scale = core.sem_seg_head.pixel_decoder.forward_features(feats, None)
        out["encoder_mask_features"] = mask_features.numpy()
        out.update({f"encoder_level{i}": m.numpy() for i, m in enumerate(multi_scale)})
    return image, out, mask_features, multi_scale


def point_prompts(image: torch.Tensor, frame: np.ndarray, points: torch.Tensor) -> dict:
    """The official decoder's input for point prompts [P,2] (x, y in [0,1]): tiny 0.005 boxes, no part labels."""
    return {
        "image": image,
        "height": frame.shape[0],
        "width": frame.shape[1],
        "targets": [
            {"points": torch.cat([points, torch.full_like(points, 0.005)], -1), "pb": torch.zeros(len(points))}
        ],
    }


def run_official(model, frame: np.ndarray) -> dict[str, np.ndarray]:
    from tasks.automatic_mask_generator import SemanticSamAutomaticMaskGenerator

    core = model.model
    image, out, mask_features, multi_scale = official_features(core, frame)
    with torch.no_grad():
        rng = np.random.default_rng(1)
        points = torch.tensor(rng.uniform(0.05, 0.95, (DECODER_POINTS, 2)), dtype=torch.float32)
        data = point_prompts(image, frame, points)
        masks, ious = core.evaluate_demo([data], None, None, mask_features, multi_scale, level=[0, 1, 2, 3, 4, 5])
        out["decoder_points"] = points.numpy()
        out["decoder_masks"] = masks.numpy().astype(np.float32)[:, ::2, ::2]  # token-major per point, stride 2
        out["decoder_ious"] = ious.numpy()
        gen = SemanticSamAutomaticMaskGenerator(model, **GEN)
        t0 = time.perf_counter()
        records = gen.generate(image)
        print(f"official generator: {len(records)} masks in {time.perf_counter() - t0:.1f} s")
    out["generator_masks"] = (
        np.packbits(np.stack([r["segmentation"] for r in records]).astype(bool), axis=-1)
        if records
        else np.zeros((0, frame.shape[0], (frame.shape[1] + 7) // 8), np.uint8)
    )
    out["generator_ious"] = np.array([r["predicted_iou"] for r in records], np.float32)
    return out


def write_tiny(ssam: Path) -> None:
    model = build_official(ssam, TINY)
    frame = test_frame()
    centre_mask_features(model, torch.from_numpy(frame).permute(2, 0, 1).float())
    arrays = run_official(model, frame)
    state = {
        f"weight/{k}": v.half().numpy() if v.is_floating_point() else v.numpy()
        for k, v in model.model.state_dict().items()
    }
    meta = {
        "config": TINY.to_dict(),
        "generator": GEN,
        "seed": SEED,
        "weights": "randomise_weights, mask features centred",
    }
    with atomic_path(FIXTURES / "golden_tiny.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, frame=frame, meta=np.array(json.dumps(meta)), **arrays, **state)
    print(f"wrote {FIXTURES / 'golden_tiny.npz'} ({(FIXTURES / 'golden_tiny.npz').stat().st_size / 1e6:.2f} MB)")


def write_swinl_keys(ssam: Path) -> None:
    model = build_official(ssam, None)
    state = model.model.state_dict()
    keys = {k: list(v.shape) for k, v in state.items()}
    params = sum(p.numel() for p in model.model.parameters())
    write_text(FIXTURES / "swinl_keys.json", json.dumps({"parameters": params, "state_dict": keys}, indent=0))
    print(f"SwinL: {params / 1e6:.1f} M parameters, {len(keys)} state-dict entries")


def centre_mask_features(model, image: torch.Tensor) -> None:
    """Shift the bias of ``mask_features`` so that its output has zero mean over this image.

    With random weights every query's mask embedding shares one large component, so all logits come
    out negative and no mask survives; centring the features (a per-frame bias, exact in float16)
    gives masks that cover parts of the frame and go through the whole post-processing.
    """
    from detectron2.structures import ImageList

    core = model.model
    x = ImageList.from_tensors([(image - core.pixel_mean) / core.pixel_std], core.size_divisibility).tensor
    conv = core.sem_seg_head.pixel_decoder.mask_features
    with torch.no_grad():
        mask_features, _, _ = core.sem_seg_head.pixel_decoder.forward_features(core.backbone(x), None)
        conv.bias.sub_(mask_features.mean((0, 2, 3))).copy_(conv.bias.half().float())


def bench_official(ssam: Path, frames_path: Path, out_path: Path) -> None:
    """Time the official SwinL generator (COMBO settings) on each frame of FRAMES_NPZ; write its masks,
    wall and CPU seconds, and the (random, seeded) weights used for each frame, so that the port can
    run the same model: ``OUT.<frame>.weights.pth``.

    Random weights give soft, alike masks: the mask head is scaled by MASK_GAIN, the IoU head's bias
    set to BENCH_IOU_BIAS and the mask features centred on the frame (:func:`centre_mask_features`).
    """
    from tasks.automatic_mask_generator import SemanticSamAutomaticMaskGenerator

    frames = dict(np.load(frames_path))
    model = build_official(ssam, None)
    predictor = model.model.sem_seg_head.predictor
    with torch.no_grad():
        for p in predictor.mask_embed.layers[-1].parameters():
            p.mul_(MASK_GAIN)
        predictor.iou_prediction_head.layers[-1].bias.fill_(BENCH_IOU_BIAS)
    base_bias = model.model.sem_seg_head.pixel_decoder.mask_features.bias.detach().clone()
    result: dict[str, np.ndarray] = {}
    for name, frame in frames.items():
        image = torch.from_numpy(frame).permute(2, 0, 1).float()
        with torch.no_grad():
            model.model.sem_seg_head.pixel_decoder.mask_features.bias.copy_(base_bias)
        centre_mask_features(model, image)
        torch.save(
            {k: v.half() if v.is_floating_point() else v for k, v in model.model.state_dict().items()},
            out_path.with_suffix(f".{name}.weights.pth"),
        )
        gen = SemanticSamAutomaticMaskGenerator(model, level=[3])  # COMBO: every other setting at its default
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            records = gen.generate(image)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        masks = np.stack([r["segmentation"] for r in records]) if records else np.zeros((0, *frame.shape[:2]), bool)
        result.update(
            {
                f"{name}/seconds": np.array(seconds),
                f"{name}/cpu_seconds": np.array(cpu),
                f"{name}/masks": np.packbits(masks, axis=-1),
                f"{name}/ious": np.array([r["predicted_iou"] for r in records], np.float32),
            }
        )
        print(
            f"official SwinL generator, {name} {frame.shape[:2]}: {len(records)} masks, {seconds:.1f} s "
            f"({cpu:.1f} CPU s)",
            flush=True,
        )
    np.savez_compressed(out_path, **result)


def swinl_tensors(ssam: Path, frame_path: Path, weights: Path, out_path: Path) -> None:
    """Intermediate outputs of the official SwinL model with WEIGHTS on FRAME_NPZ's 'frame': backbone
    features, encoder outputs, and masks (token 0, image size) and IoU scores of the first 200 grid points.
    A WEIGHTS file that does not exist is written first, with the fully randomised (seeded) weights."""
    from utils.sam_utils.amg import build_point_grid

    model = build_official(ssam, None)
    if not weights.exists():
        with atomic_path(weights) as tmp:
            torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.model.state_dict().items()}, tmp)
    state = {k: v.float() if v.is_floating_point() else v for k, v in torch.load(weights).items()}
    model.model.load_state_dict(state)
    frame = np.load(frame_path)["frame"]
    arrays = run_official_tensors(model, frame, torch.tensor(build_point_grid(32)[:200], dtype=torch.float32))
    np.savez_compressed(out_path, **arrays)
    print(f"wrote {out_path}")


def run_official_tensors(model, frame: np.ndarray, points: torch.Tensor) -> dict[str, np.ndarray]:
    core = model.model
    image, out, mask_features, multi_scale = official_features(core, frame)
    with torch.no_grad():
        data = point_prompts(image, frame, points)
        masks, ious = core.evaluate_demo([data], None, None, mask_features, multi_scale, level=[0])
    out["points"] = points.numpy()
    out["decoder_masks"] = masks.numpy()
    out["decoder_ious"] = ious.numpy().reshape(-1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--semantic-sam", type=Path, required=True, help="Semantic-SAM checkout")
    ap.add_argument("--detectron2", type=Path, required=True, help="detectron2(-xyz) checkout")
    ap.add_argument(
        "--swinl-tensors",
        nargs=3,
        type=Path,
        metavar=("FRAME_NPZ", "WEIGHTS", "OUT_NPZ"),
        help="instead, dump the official SwinL model's intermediate outputs (with WEIGHTS; written fully randomised if missing)",
    )
    ap.add_argument(
        "--bench",
        nargs=2,
        type=Path,
        metavar=("FRAMES_NPZ", "OUT_NPZ"),
        help="instead, time the official SwinL generator on every frame of FRAMES_NPZ",
    )
    args = ap.parse_args()
    bench = [p.resolve() for p in args.bench] if args.bench else None
    tensors = [p.resolve() for p in args.swinl_tensors] if args.swinl_tensors else None
    args.semantic_sam, args.detectron2 = args.semantic_sam.resolve(), args.detectron2.resolve()
    sys.path[:0] = [str(args.semantic_sam.resolve()), str(args.detectron2.resolve())]
    os.chdir(args.semantic_sam)  # the official code opens its configs by relative path
    patch_for_cpu()
    if bench:
        bench_official(args.semantic_sam, *bench)
        return
    if tensors:
        swinl_tensors(args.semantic_sam, *tensors)
        return
    write_tiny(args.semantic_sam)
    write_swinl_keys(args.semantic_sam)


if __name__ == "__main__":
    main()
