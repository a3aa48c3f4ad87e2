"""Golden outputs of the official COMBO code, for tests/train/test_combo_official.py.

Run by anyone who has the official sources (nothing official is committed here)::

    git clone https://github.com/yannqi/COMBO-AVS
    git clone https://github.com/facebookresearch/detectron2      # on sys.path only, no build
    pip install --target pydeps fvcore iopath yacs termcolor portalocker pycocotools opencv-python-headless
    python tools/combo_golden.py --combo COMBO-AVS --detectron2 detectron2 --pydeps pydeps

It writes into ``tests/fixtures/combo/``:

* ``keys_{r50,pvt}_{binary,avss}.json``: every state-dict key and shape of the full official models
  (configs ``avs_s4/COMBO_R50_bs8_90k.yaml``, ``avs_s4/COMBO_PVTV2B5_bs8_90k.yaml`` and their
  ``avs_ss`` twins with the 71-class head);
* ``golden_small.npz`` + ``golden_small.json``: the R50 model in a reduced configuration ``SMALL``
  (narrow ResNet-50 trunk, 2 pixel-decoder layers, 3 decoder layers, 10 queries; the widths fixed
  in the official code stay: hidden 256, audio MLP 128-4096-4096-256), every parameter and buffer
  set by ``tests/fixtures/combo/weights.py`` (the JSON lists the keys and shapes, so the test rebuilds
  the weights), one clip of 5 frames of 64x64, and the official outputs: backbone features,
  pixel-decoder outputs, fused features, audio queries, class and mask logits of every decoder
  layer, the final per-pixel scores and the loss terms for one fixed target.

Run-time patches, none of which changes a parameter: an empty ``MultiScaleDeformableAttention``
module (``MSDeformAttn`` then takes Mask2Former's pure-PyTorch path), empty ``resampy``/``soundfile``
modules (imported by the VGGish audio front end, unused here), ``.cuda()`` as a no-op, and the
``models`` package imported without its ``__init__`` (which registers datasets). VGGish always
loads its weight file: it gets a random file of the same layout. The numeric fixture starts after
VGGish (audio embeddings are inputs): our VGGish is checked by tests/train/test_models_vggish.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.fixtures.combo.weights import random_state  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "combo"
SEED = 2024
FRAMES, SIZE, AUDIO_DIM = 5, 64, 128
SMALL = {  # config overrides of the numeric fixture (the key lists use the full configs)
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 16,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 32,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 8,
    "MODEL.PRE_SAM.PRE_SAM_DIM": [32, 64, 128, 256],
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": 2,
    "MODEL.MASK_FORMER.DEC_LAYERS": 4,
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 10,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD": 256,
}
CONFIGS = {
    "r50_binary": "avs_s4/COMBO_R50_bs8_90k.yaml",
    "r50_avss": "avs_ss/COMBO_R50_bs8_90k.yaml",
    "pvt_binary": "avs_s4/COMBO_PVTV2B5_bs8_90k.yaml",
    "pvt_avss": "avs_ss/COMBO_PVTV2B5_bs8_90k.yaml",
}


def patch_for_cpu(combo: Path, detectron2: Path, pydeps: Path | None) -> None:
    sys.path[:0] = [str(p) for p in (pydeps, detectron2, combo) if p is not None]
    for name in ("MultiScaleDeformableAttention", "resampy", "soundfile"):
        sys.modules.setdefault(name, types.ModuleType(name))
    package = types.ModuleType("models")  # skip models/__init__.py (dataset registration, pandas)
    package.__path__ = [str(combo / "models")]
    sys.modules["models"] = package
    torch.Tensor.cuda = lambda self, *a, **k: self


def build_official(combo: Path, config: str, overrides: dict, vggish_file: Path):
    import models.maskformer_model  # noqa: F401  (registers MaskFormer)
    import models.modeling  # noqa: F401
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.projects.deeplab import add_deeplab_config
    from models.config import add_audio_config, add_fuse_config, add_maskformer2_config

    cfg = get_cfg()
    for add in (add_deeplab_config, add_maskformer2_config, add_audio_config, add_fuse_config):
        add(cfg)
    cfg.merge_from_file(str(combo / "configs" / config))
    cfg.merge_from_list([x for key, value in overrides.items() for x in (key, value)])
    cfg.MODEL.AUDIO.PRETRAINED_VGGISH_MODEL_PATH = str(vggish_file)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(SEED)
    return build_model(cfg).eval()


def random_vggish_file(folder: Path) -> Path:
    from models.modeling.audio_backbone.torchvggish import vggish

    path = folder / "vggish_random.pth"
    torch.manual_seed(SEED)
    torch.save(vggish.VGG(vggish.make_layers()).state_dict(), path)
    return path


def key_shapes(model) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def randomise(model) -> dict[str, list[int]]:
    """Every parameter and buffer from tests/fixtures/combo/weights.py (criterion.empty_weight,
    the no-object weight of the loss, stays the config's); returns the keys and shapes set."""
    current = model.state_dict()
    shapes = {k: s for k, s in key_shapes(model).items() if k != "criterion.empty_weight"}
    state = OrderedDict(random_state(shapes, SEED))
    state._metadata = current._metadata  # module versions: no legacy key renaming on load
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["criterion.empty_weight"] and not unexpected, (missing, unexpected)
    return shapes


def clip_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    frames = rng.uniform(0, 255, (FRAMES, 3, SIZE, SIZE)).astype(np.float32)
    maskiges = rng.integers(0, 6, (FRAMES, 1, SIZE // 8, SIZE // 8)).repeat(8, 2).repeat(8, 3)
    maskiges = (maskiges * 40.0).repeat(3, 1).astype(np.float32)
    gt = np.zeros((FRAMES, SIZE, SIZE), np.int64)
    for t in range(FRAMES):
        gt[t, 8 + 4 * t : 40 + 2 * t, 10 : 50 - 3 * t] = 1
    audio = rng.standard_normal((FRAMES, AUDIO_DIM)).astype(np.float32)
    return {"frames": frames, "maskiges": maskiges, "audio": audio, "gt": gt}


def run_official(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The official forward of ``MaskFormer.forward`` after VGGish, step by step, outputs recorded."""
    out: dict[str, torch.Tensor] = {}
    mean, std = model.pixel_mean, model.pixel_std
    images = (torch.from_numpy(inputs["frames"]) - mean) / std
    maskiges = (torch.from_numpy(inputs["maskiges"]) - mean) / std
    audio = torch.from_numpy(inputs["audio"]).unsqueeze(1)  # [N,1,128] as after VGGish
    with torch.no_grad():
        features = model.backbone(images)
        masks = model.pre_sam_backbone(maskiges)
        for i, key in enumerate(list(features)):
            out[f"image_{key}"] = features[key]
            features[key] = features[key] + model.scale_factor_module[i](masks[key]) * masks[key]
            out[f"siam_{key}"] = features[key]
        head = model.sem_seg_head
        mask_features, _, multi_scale = head.pixel_decoder.forward_features(dict(features))
        out["mask_features"] = mask_features
        for i, level in enumerate(multi_scale):
            out[f"multi_scale_{i}"] = level
        fused = head.fusion_module({"res2": mask_features}, audio)
        out["fused_visual"], out["fused_audio"] = fused["visual"]["res2"], fused["audio"]
        out["audio_queries"] = head.audio_transformation(fused["audio"])
        predictions = head.predictor(multi_scale, out["audio_queries"], out["fused_visual"], None)
        whole = head(dict(features), audio)  # the head end to end must agree with the steps above
        assert torch.equal(whole["pred_masks"], predictions["pred_masks"])
        layers = [*predictions["aux_outputs"], predictions]
        for i, layer in enumerate(layers):
            out[f"pred_logits_{i}"], out[f"pred_masks_{i}"] = layer["pred_logits"], layer["pred_masks"]
        upsampled = torch.nn.functional.interpolate(
            predictions["pred_masks"], size=(SIZE, SIZE), mode="bilinear", align_corners=False
        )
        out["semseg"] = torch.stack(
            [model.semantic_inference(c, m) for c, m in zip(predictions["pred_logits"], upsampled)]
        )
        out.update(official_losses(model, predictions, inputs["gt"]))
    return {key: value.float().numpy() for key, value in out.items()}


def official_losses(model, predictions: dict, gt: np.ndarray) -> dict[str, torch.Tensor]:
    """Weighted loss terms of the official criterion, summed over the decoder layers as in training."""
    targets = []
    for frame in torch.from_numpy(gt):
        labels = torch.unique(frame)
        targets.append({"labels": labels, "masks": (frame[None] == labels[:, None, None]).float()})
    torch.manual_seed(SEED)
    losses = model.criterion(dict(predictions), targets)
    sums = {"loss_ce": 0.0, "loss_mask": 0.0, "loss_dice": 0.0, "loss_cosine": 0.0}
    for key, value in losses.items():
        base = next(name for name in sums if key == name or key.startswith(name + "_"))
        sums[base] = sums[base] + value * model.criterion.weight_dict[key]
    return {key: torch.as_tensor(value) for key, value in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combo", type=Path, required=True, help="checkout of yannqi/COMBO-AVS")
    parser.add_argument("--detectron2", type=Path, required=True, help="checkout of facebookresearch/detectron2")
    parser.add_argument("--pydeps", type=Path, help="folder of extra packages (fvcore, iopath, ...)")
    parser.add_argument("--small-only", action="store_true", help="only the numeric fixture")
    args = parser.parse_args()
    patch_for_cpu(args.combo.resolve(), args.detectron2.resolve(), args.pydeps and args.pydeps.resolve())
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vggish_file = random_vggish_file(Path(tmp))
        for name, config in CONFIGS.items() if not args.small_only else ():
            model = build_official(args.combo, config, {}, vggish_file)
            shapes = key_shapes(model)
            count = sum(p.numel() for p in model.parameters())
            (FIXTURES / f"keys_{name}.json").write_text(json.dumps({"parameters": count, "shapes": shapes}, indent=0))
            print(f"{name}: {len(shapes)} entries, {count} parameters")
            del model
        model = build_official(args.combo, CONFIGS["r50_binary"], SMALL, vggish_file)
    shapes = randomise(model)
    inputs = clip_inputs()
    outputs = run_official(model, inputs)
    np.savez_compressed(FIXTURES / "golden_small.npz", **inputs, **outputs)
    meta = {"seed": SEED, "config": CONFIGS["r50_binary"], "overrides": SMALL, "shapes": shapes}
    (FIXTURES / "golden_small.json").write_text(json.dumps(meta, indent=0))
    print({key: float(np.abs(value).max()) for key, value in outputs.items()})


if __name__ == "__main__":
    main()
