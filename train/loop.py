"""Training loop: AdamW + poly schedule, gradient clipping, bf16 autocast on CUDA, DDP via torchrun,
atomic checkpoints and exact resume.

Exact resume: the data order and each sample's augmentation are functions of (seed, epoch, index)
(:class:`train.data.LengthGroupedSampler`, :class:`train.data.Augmentation`), the DataLoader gets
its own generator (so it never consumes the global RNG), and checkpoints carry the model,
optimiser, scheduler, step and the global RNG states. On the CPU a resumed run therefore
produces the same losses as an uninterrupted one (a test checks it).
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from pipeline.atomic import atomic_path
from train.data import Augmentation, ClipDataset, ClipSource, LengthGroupedSampler, collate_clips, prepare_batch
from train.models import build_model

NUM_CLASSES = {"binary": 2, "semantic": 71}
LOG_FLUSH_EVERY = 10  # steps between rewrites of the CSV log


@dataclass
class TrainParams:
    """``train`` section of params.yaml."""

    model: str = "combo_mnv2"  # a name from train.models.list_models()
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides for the model builder
    task: str = "binary"  # binary (S4/MS3: 2 classes) | semantic (AVSS: 71 classes)
    datasets: list[str] = field(default_factory=lambda: ["demo_s4"])
    split: str = "train"
    size: list[int] = field(default_factory=lambda: [224, 224])  # model input [H, W]
    audio_key: str = "embeddings"  # embeddings | logmel (model runs VGGish)
    batch_size: int = 4  # clips per step (per process under DDP)
    max_steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    poly_power: float = 0.9
    grad_clip: float = 0.01  # max global gradient norm (Mask2Former/COMBO clip the full model at 0.01)
    freeze_backbone: bool = False  # keep ImageNet backbones fixed (fast CPU training); BN stays in eval mode
    augment: bool = True
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    hflip: bool = True
    colour_jitter: float = 0.2
    seed: int = 0
    num_workers: int = 2
    threads: int | None = None  # torch CPU threads; None = torch's default
    checkpoint_every: int = 200
    amp: str = "auto"  # auto: bf16 autocast on CUDA, off on CPU | bf16 | off

    def __post_init__(self) -> None:
        if self.task not in NUM_CLASSES:
            raise ValueError(f"task must be one of {sorted(NUM_CLASSES)}, got {self.task!r}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be auto, bf16 or off, got {self.amp!r}")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def pick_device(info: DistInfo) -> torch.device:
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def model_config_for(cfg: TrainParams, audio_dim: int) -> dict[str, Any]:
    config = {"num_classes": NUM_CLASSES[cfg.task], **cfg.model_config}
    if cfg.audio_key == "embeddings":
        config.setdefault("audio_dim", audio_dim)
    return config


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - turn unpickling errors into one clear line
        raise RuntimeError(f"{path}: not a loadable checkpoint ({exc})") from exc


def build_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    model = build_model(ckpt["model_name"], **ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def _accepts_step(model: nn.Module) -> bool:
    return "step" in inspect.signature(model.compute_losses).parameters


def set_train_mode(model: nn.Module, freeze_backbone: bool) -> None:
    """Training mode, except frozen backbones, whose BatchNorm statistics must not drift."""
    model.train()
    if freeze_backbone:
        for name, module in model.named_modules():
            if name.endswith("backbone"):
                module.eval()


def poly_lambda(max_steps: int, power: float):
    return lambda step: max(0.0, 1.0 - step / max_steps) ** power


class TrainLog:
    """Per-step losses and learning rate as CSV (rendered by ``dvc plots``); resumable."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume_step > 0 and path.is_file():
            with open(path, newline="") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        self.fields: list[str] | None = list(self.rows[0].keys()) if self.rows else None

    def add(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row.keys())
        self.rows.append(row)

    def flush(self) -> None:
        if not self.rows or self.fields is None:
            return
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)


def train(cfg: TrainParams, data_root: str, shards: list[int], run_dir: str | Path, *, resume: str | bool = False,
          progress: bool = True, log_path: str | Path | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on the cached shards; write checkpoints under ``run_dir``.

    ``resume``: True = the latest checkpoint in ``run_dir``, a path = that checkpoint.
    ``stop_after``: stop (with a checkpoint) after this many steps in this call (tests, time limits).
    Returns {"final": path of the final checkpoint or None, "steps": steps done, "losses": [...]}.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    info = init_distributed()
    device = pick_device(info)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    source = ClipSource(data_root=data_root, audio_key=cfg.audio_key, maskige=cfg.model.startswith("combo"),
                        size=tuple(cfg.size))
    augmentation = (Augmentation(tuple(cfg.size), tuple(cfg.scale_range), cfg.hflip, cfg.colour_jitter)
                    if cfg.augment else None)
    dataset = ClipDataset(cfg.datasets, shards, cfg.split, source, augmentation, seed=cfg.seed)
    if len(dataset) == 0:
        raise RuntimeError(f"no '{cfg.split}' clips with all features in {cfg.datasets} under {data_root}")
    sampler = LengthGroupedSampler([c.num_frames for c in dataset.clips], cfg.batch_size, seed=cfg.seed,
                                   rank=info.rank, world_size=info.world_size,
                                   drop_last=len(dataset) >= cfg.batch_size * info.world_size)
    feature_params = dataset.feature_params()
    audio_dim = dataset[0]["audio" if cfg.audio_key == "embeddings" else "logmel"].shape[-1]
    model_config = model_config_for(cfg, audio_dim)
    model = build_model(cfg.model, **model_config).to(device)
    if cfg.freeze_backbone:
        for name, param in model.named_parameters():
            if "backbone" in name:
                param.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                         backbone_lr_mult=cfg.backbone_lr_mult))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(cfg.max_steps, cfg.poly_power))
    step = 0
    resume_path = latest_checkpoint(run_dir) if resume is True else (Path(resume) if resume else None)
    if resume_path is None and info.is_main:
        # A fresh run owns its checkpoint folder: checkpoints left by an earlier run (other params)
        # must never be picked up by a later `--resume`.
        for stale in (run_dir / "checkpoints").glob("step-*.pt"):
            stale.unlink()
    if resume_path is not None:
        ckpt = load_checkpoint(resume_path, map_location=device)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if torch.cuda.is_available() and ckpt["rng"].get("cuda"):
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
    train_model: nn.Module = model
    if info.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if device.type == "cuda" else None, find_unused_parameters=True)
    use_amp = device.type == "cuda" and cfg.amp in ("auto", "bf16")
    accepts_step = _accepts_step(model)
    log = TrainLog(Path(log_path) if log_path else run_dir / "train_log.csv", step)
    steps_per_epoch = len(sampler)
    if steps_per_epoch == 0:
        raise RuntimeError(f"{len(dataset)} clips cannot fill one batch of {cfg.batch_size}")

    def save(path: Path) -> None:
        if not info.is_main:
            return
        _atomic_save({
            "model_name": cfg.model, "model_config": model_config, "task": cfg.task,
            "feature_params": feature_params,
            "train_params": {k: v for k, v in asdict(cfg).items()},
            "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "step": step,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }, path)

    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.model}", unit="step",
               disable=not (progress and info.is_main), dynamic_ncols=True)
    losses_seen: list[float] = []
    done_here = 0
    set_train_mode(model, cfg.freeze_backbone)
    start = time.perf_counter()
    while step < cfg.max_steps and (stop_after is None or done_here < stop_after):
        epoch, position = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        batches = list(sampler)[position:]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_clips, num_workers=cfg.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed), pin_memory=device.type == "cuda",
                            multiprocessing_context="fork" if cfg.num_workers > 0 else None)
        for batch in loader:
            batch = prepare_batch(batch, device)  # uint8 -> normalised float32 (+ colour jitter) on the device
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()
            with autocast:
                outputs = train_model(batch)
            losses = model.compute_losses(outputs, batch, **({"step": step} if accepts_step else {}))
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
            optimizer.step()
            scheduler.step()
            step += 1
            done_here += 1
            values = {k: float(v.detach()) for k, v in losses.items()}
            if not math.isfinite(values["total"]):
                raise RuntimeError(f"loss became {values['total']} at step {step}")
            losses_seen.append(values["total"])
            log.add({"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                     **{f"loss_{k}": round(v, 6) for k, v in values.items()},
                     "grad_norm": round(float(grad_norm), 6) if grad_norm is not None else "",
                     "seconds": round(time.perf_counter() - start, 3)})
            bar.update(1)
            bar.set_postfix(loss=f"{values['total']:.3f}")
            if step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
                save(run_dir / "checkpoints" / f"step-{step:07d}.pt")
            if info.is_main and (step % LOG_FLUSH_EVERY == 0 or step % cfg.checkpoint_every == 0):
                log.flush()  # so `dvc plots` / `tail` show a run in progress
            if step >= cfg.max_steps or (stop_after is not None and done_here >= stop_after):
                break
    bar.close()
    final = None
    if info.is_main:
        if step >= cfg.max_steps:
            final = run_dir / "model.pt"
            save(final)
        else:
            save(run_dir / "checkpoints" / f"step-{step:07d}.pt")
        log.flush()
    if info.world_size > 1:
        dist.barrier()
    return {"final": final, "steps": step, "losses": losses_seen}
