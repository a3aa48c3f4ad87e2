"""What every stage does the same way: load params, resolve dataset/shard paths, report failures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline.failures import FailureLog
from pipeline.params import DaskParams, DataParams, DatasetName, ParamsError, from_section, load_params
from pipeline.shards import shard_file


T = TypeVar("T")


@dataclass
class _DatasetArg:
    dataset: DatasetName


def add_common(parser: argparse.ArgumentParser, *, dataset: bool = True, shard: bool = False) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    if dataset:
        parser.add_argument("--dataset", help="dataset name (a key of manifest.datasets)")
    if shard:
        parser.add_argument("--shard", type=int, help="shard number (0..N-1)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


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

    def section(self, cls: type[T], name: str, **overrides: Any) -> T:
        """params.yaml section ``name`` as dataclass ``cls``, validated after applying the command-line
        ``overrides`` (those that are not None), so an override is checked like the file's value."""
        mapping = self.params.get(name)
        if mapping is not None and not isinstance(mapping, dict):
            raise ParamsError(f"params.yaml section '{name}' must be a mapping")
        merged = {**(mapping or {}), **{k: v for k, v in overrides.items() if v is not None}}
        return from_section(cls, merged, name)

    def dask(self) -> DaskParams:
        return self.section(DaskParams, "dask", scheduler_address=getattr(self.args, "scheduler", None),
                            n_workers=getattr(self.args, "workers", None))

    @property
    def data_root(self) -> Path:
        return Path(self.data.root)

    def shard_io(self, source_kind: str, kind: str) -> tuple[Path, Path]:
        """(input shard, output shard) of a feature stage: ``--in``/``--out``, else derived from
        ``--dataset``/``--shard``. The input must exist."""
        args = self.args
        if args.in_path and args.out:
            in_path, out_path = Path(args.in_path), Path(args.out)
        elif args.dataset is not None and args.shard is not None:
            in_path = Path(args.in_path) if args.in_path else shard_file(self.data_root, args.dataset, source_kind, args.shard)
            out_path = Path(args.out) if args.out else shard_file(self.data_root, args.dataset, kind, args.shard)
        else:
            raise ParamsError("give --dataset and --shard, or --in and --out")
        if not in_path.is_file():
            raise ParamsError(f"{in_path}: {source_kind} shard not found (run `avs {source_kind}` first)")
        return in_path, out_path


def finish(failures: FailureLog, failures_path: Path, *, strict: bool, what: str) -> int:
    """Write the failures file, print a one-line summary, and choose the exit code."""
    failures.write(failures_path)
    errors, warnings = len(failures.errors), len(failures.rows) - len(failures.errors)
    if errors or warnings:
        print(f"{what}: {errors} failed, {warnings} warning(s); see {failures_path}", file=sys.stderr)
    if errors and strict:
        print(f"{what}: strict mode: failing because {errors} video(s) failed", file=sys.stderr)
        return 1
    return 0
