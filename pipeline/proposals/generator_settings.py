"""The settings of the two mask generators, without the generators (and so without torch):
:class:`pipeline.proposals.generator.FastMaskGenerator` (with its version) and Semantic-SAM's
(:mod:`pipeline.proposals.semantic_sam.generator`). The ``proposals`` params section is validated with
them by every run of ``avs proposals``, including those that read COMBO's maskige trees (whose shards
record Semantic-SAM's settings) and run no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Part of every proposal cache key: bump it whenever a code change alters the masks for the same
# settings, so that cached per-video results from older code are never served.
GENERATOR_VERSION = 2  # 2: reference-exact resize/post-processing, shared decoder, coarse-to-fine rounds


@dataclass(frozen=True)
class GeneratorSettings:
    """Knobs of :class:`FastMaskGenerator` (the ``proposals`` params section carries them)."""

    points_per_side: int = 32  # the prompt grid (SAM's automatic generator: 32 x 32)
    coarse_levels: int = 3  # round 1 prompts every 2^levels-th grid point per axis; each next
    # round halves the stride and prompts only grid points that no
    # kept mask covers yet. 0: the whole grid in one round (the reference)
    points_per_batch: int = 2  # prompts per decoder call: [B,4096,256] tensors stay cache-sized
    # (measured on a CPU: 25 s at 2, 35 s at 8, 40 s at 16 per frame)
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0  # > 0: drop islands and fill holes smaller than this (pixels)
    cover_max_area: float = 1.0  # refinement rounds skip grid points covered by a kept mask of at
    # most this fraction of the frame (1.0: any kept mask covers)
    distinct_similarity: float = 0.0  # refinement rounds still prompt a covered grid point whose image
    # embedding has cosine similarity below this to all of its 8 grid
    # neighbours (small distinct parts); 0: off

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise ValueError("points_per_side must be >= 1")
        if self.points_per_batch < 1:
            raise ValueError("points_per_batch must be >= 1")
        if self.coarse_levels < 0:
            raise ValueError("coarse_levels must be >= 0")
        if not 0.0 < self.cover_max_area <= 1.0:
            raise ValueError("cover_max_area must be in (0, 1]")
        if not -1.0 <= self.distinct_similarity <= 1.0:
            raise ValueError("distinct_similarity must be in [-1, 1]")


# The official ``level`` argument (1..6) -> mask-token index.
LEVEL_TO_TOKEN = {1: 3, 2: 2, 3: 0, 4: 4, 5: 1, 6: 5}


@dataclass(frozen=True)
class SemanticSamGeneratorSettings:
    level: tuple[int, ...] = (3,)
    points_per_side: int = 32
    points_per_batch: int = 200
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.92
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 10
    tokens: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        bad = [lv for lv in self.level if lv not in LEVEL_TO_TOKEN]
        if bad or not self.level:
            raise ValueError(f"semantic_sam.level must be a non-empty list of 1..6, got {list(self.level)}")
        if self.points_per_batch < 1 or self.points_per_side < 1:
            raise ValueError("semantic_sam.points_per_side and points_per_batch must be >= 1")
        object.__setattr__(self, "tokens", tuple(LEVEL_TO_TOKEN[lv] for lv in self.level))
