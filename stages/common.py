"""What every stage does the same way: load params, resolve dataset/shard paths, report failures."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.failures import FailureLog
from pipeline.params import DaskParams, DataParams, DatasetName, ParamsError, from_section, load_params

# pipeline.shards (h5py, numpy: ~0.15 s) is imported by the functions that read or name shards, not here:
# `avs manifest` runs on every added video and needs neither.

T = TypeVar("T")


@dataclass
class _DatasetArg:
    dataset: DatasetName


def check_argument(flag: str, value: Any, annotation: Any) -> Any:
    """A command-line value validated like the param it stands for (same annotation, same pydantic rules):
    ``check_argument("--size", [0, 0], Size2)`` -> ParamsError ``--size.0 must be >= 8, got 0``."""
    holder = dataclasses.make_dataclass("Argument", [("value", annotation)])
    try:
        return from_section(holder, {"value": value}, flag).value
    except ParamsError as exc:
        raise ParamsError(str(exc).replace(f"{flag}.value", flag)) from None


def add_common(parser: argparse.ArgumentParser, *, dataset: bool = True, shard: bool = False) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    if dataset:
        parser.add_argument("--dataset", help="dataset name (a key of manifest.datasets)")
    if shard:
        parser.add_argument("--shard", type=int, help="shard number (0..N-1)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_feature_stage(parser: argparse.ArgumentParser, source_kind: str, kind: str) -> None:
    """The arguments every shard-to-shard feature stage takes (``--in``/``--out`` or dataset + shard)."""
    add_common(parser, shard=True)
    add_dask(parser)
    parser.add_argument(
        "--in",
        dest="in_path",
        help=f"{source_kind} shard .h5 (default: {{data.root}}/{{dataset}}/{source_kind}/shard-N.h5)",
    )
    parser.add_argument("--out", help=f"output shard .h5 (default: {{data.root}}/{{dataset}}/{kind}/shard-N.h5)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any video fails")


def add_dask(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", help="dask scheduler address (overrides dask.scheduler_address)")
    parser.add_argument("--workers", type=int, help="local dask workers (0 = in-process; overrides dask.n_workers)")


class StageContext:
    """Params and paths of one stage run. Every stage reads its params through :meth:`section`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.params: dict[str, Any] = load_params(args.params)
        self.data = self.section(DataParams, "data")
        self.progress = not getattr(args, "no_progress", False)
        if getattr(args, "dataset", None) is not None:
            from_section(_DatasetArg, {"dataset": args.dataset}, "--dataset")
        shard = getattr(args, "shard", None)
        if shard is not None and not 0 <= shard < self.data.num_shards:
            raise ParamsError(f"--shard must be in 0..{self.data.num_shards - 1} (data.shards), got {shard}")

    def section(self, cls: type[T], name: str, **overrides: Any) -> T:
        """params.yaml section ``name`` as dataclass ``cls``, validated after applying the command-line
        ``overrides`` (those that are not None), so an override is checked like the file's value."""
        mapping = self.params.get(name)
        if mapping is not None and not isinstance(mapping, dict):
            raise ParamsError(f"params.yaml section '{name}' must be a mapping")
        merged = {**(mapping or {}), **{k: v for k, v in overrides.items() if v is not None}}
        return from_section(cls, merged, name)

    def dask(self) -> DaskParams:
        return self.section(
            DaskParams,
            "dask",
            scheduler_address=getattr(self.args, "scheduler", None),
            n_workers=getattr(self.args, "workers", None),
        )

    @property
    def data_root(self) -> Path:
        return Path(self.data.root)

    @property
    def source_hash_cache(self) -> Path:
        """The sha256 cache of source files: `avs manifest` fills it, `avs extract` checks sources with it."""
        return self.data_root / "cache" / "sha256.json"

    def shard_io(self, source_kind: str, kind: str) -> tuple[Path, Path]:
        """(input shard, output shard) of a feature stage: ``--in``/``--out``, else derived from
        ``--dataset``/``--shard``. The input must exist."""
        from pipeline.shards import shard_file

        args = self.args
        if args.in_path and args.out:
            in_path, out_path = Path(args.in_path), Path(args.out)
        elif args.dataset is not None and args.shard is not None:
            in_path = (
                Path(args.in_path)
                if args.in_path
                else shard_file(self.data_root, args.dataset, source_kind, args.shard)
            )
            out_path = Path(args.out) if args.out else shard_file(self.data_root, args.dataset, kind, args.shard)
        else:
            raise ParamsError("give --dataset and --shard, or --in and --out")
        if not in_path.is_file():
            raise ParamsError(f"{in_path}: {source_kind} shard not found (run `avs {source_kind}` first)")
        return in_path, out_path


def _videos_in(shard: Path) -> int:
    from pipeline.shards import ShardReader

    if not shard.is_file():
        return 0
    with ShardReader(shard) as reader:
        return len(reader.video_ids())


def label_formats(data_root: Path, datasets: list[str], shards: list[int], split: str) -> dict[str, set[str]]:
    """dataset -> the ``label_format`` of its extracted ``split`` videos (from the extract shards' attributes;
    datasets not extracted yet are left out)."""
    from pipeline.shards import ShardReader, shard_file

    found: dict[str, set[str]] = {}
    for dataset in datasets:
        for shard in shards:
            path = shard_file(data_root, dataset, "extract", shard)
            if not path.is_file():
                continue
            with ShardReader(path) as reader:
                for vid in reader.video_ids():
                    attrs = reader.video_attrs(vid)
                    if attrs.get("split") == split:
                        found.setdefault(dataset, set()).add(str(attrs.get("label_format", "none")))
    return found


def _reason_kind(failure) -> str:
    """A failure's reason without the file and video it names, so that one cause counts across videos."""
    reason = failure.reason.split(": ", 1)[-1].replace(f"video {failure.video_id!r} ", "")
    return reason[:150]


def finish(failures: FailureLog, out_path: Path, *, strict: bool, what: str) -> int:
    """Write the failures file beside shard ``out_path``, print a one-line summary, and choose the exit code:
    1 when videos failed and none was written (nothing succeeded), or when any failed in strict mode."""
    from pipeline.shards import failures_file

    failures_path = failures_file(out_path)
    failures.write(failures_path)
    errors, warnings = len(failures.errors), len(failures.rows) - len(failures.errors)
    if errors or warnings:
        print(f"{what}: {errors} failed, {warnings} warning(s); see {failures_path}", file=sys.stderr)
    if errors and _videos_in(out_path) == 0:
        reason, count = Counter(_reason_kind(f) for f in failures.errors).most_common(1)[0]
        print(f"{what}: every video failed ({errors}); most common reason ({count}x): {reason}", file=sys.stderr)
        return 1
    if errors and strict:
        print(f"{what}: strict mode: failing because {errors} video(s) failed", file=sys.stderr)
        return 1
    return 0
