"""Where each dataset's maskiges come from: computed by a SAM-family backend, or read from a COMBO tree.

```yaml
proposals:
  backend: mobile_sam          # ... the backend settings (ProposalParams) for computed maskiges
  datasets: [demo_s4, demo_ms3]          # computed with `backend` (dvc.yaml: proposals@D-S)
  maskige_trees: {combo_s4: PATH, ...}   # read from COMBO's pre_SAM_mask tree (dvc.yaml: combo_maskiges@D)
```

Both lists exist for dvc.yaml (a matrix over names cannot look a per-dataset path up, a foreach over a
mapping can: see docs/data.md). A dataset in neither list is computed with ``backend`` when ``avs
proposals`` is run by hand. Every source has the same small interface, :class:`MaskigeSource`; the
stage asks :func:`maskige_source` for the dataset's and never looks at its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

from pipeline.failures import FailureLog
from pipeline.params import DaskParams, DatasetName
from pipeline.proposals.config import ProposalParams
from pipeline.proposals.precomputed import ComboMaskigeTree
from pipeline.proposals.shard import propose_shard


class MaskigeSource(Protocol):
    """Writes the proposals shard (maskige uint8 [T,H,W,3], mask_counts / dropped_masks int32 [T]) of one
    extraction shard; returns (failures, videos served from a cache)."""

    @property
    def label(self) -> str: ...

    def write_shard(
        self,
        extract_path: Path,
        out_path: Path,
        *,
        dataset: str = "",
        manifest: Path | None = None,
        progress: bool = True,
    ) -> tuple[FailureLog, int]: ...


@dataclass(frozen=True)
class ComputedMaskiges:
    """Maskige source: a SAM-family backend run on the extracted frames (:func:`propose_shard`)."""

    params: ProposalParams
    dask_cfg: DaskParams
    reuse: bool = True

    @property
    def label(self) -> str:
        return f"backend {self.params.backend}"

    def write_shard(
        self,
        extract_path: Path,
        out_path: Path,
        *,
        dataset: str = "",
        manifest: Path | None = None,
        progress: bool = True,
    ) -> tuple[FailureLog, int]:
        return propose_shard(
            extract_path, out_path, self.params, self.dask_cfg, dataset=dataset, progress=progress, reuse=self.reuse
        )


@dataclass(frozen=True)
class ProposalStageParams(ProposalParams):
    """The ``proposals`` section: the backend settings (:class:`ProposalParams`, the shards' record) and
    which datasets take their maskiges from where (stage keys, kept out of the record)."""

    datasets: list[DatasetName] = field(default_factory=list)
    maskige_trees: dict[DatasetName, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        both = sorted(set(self.datasets) & set(self.maskige_trees))
        if both:
            raise ValueError(f"proposals.datasets and proposals.maskige_trees both list {both}: choose one source")
        empty = sorted(name for name, tree in self.maskige_trees.items() if not str(tree).strip())
        if empty:
            raise ValueError(f"proposals.maskige_trees.{empty[0]} must be a folder path, got an empty string")

    def backend_params(self) -> ProposalParams:
        """The :class:`ProposalParams` part alone (what computed shards record)."""
        return ProposalParams(**{f.name: getattr(self, f.name) for f in fields(ProposalParams)})


def maskige_source(
    params: ProposalStageParams,
    dataset: str,
    dask_cfg: DaskParams,
    *,
    reuse: bool = True,
    tree_hash_cache: Path | None = None,
) -> MaskigeSource:
    """The source of ``dataset``'s maskiges: its COMBO tree when ``proposals.maskige_trees`` names one
    (its files hashed through the stat-keyed ``tree_hash_cache``), else the configured backend. ``reuse``:
    unchanged videos are copied from the previous shard."""
    if dataset in params.maskige_trees:
        return ComboMaskigeTree(str(params.maskige_trees[dataset]), str(tree_hash_cache or ""), reuse)
    return ComputedMaskiges(params.backend_params(), dask_cfg, reuse)
