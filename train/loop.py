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
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.distributed as dist
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from pipeline.labels import NUM_AVSS_CLASSES
from pipeline.params import (
    DatasetName,
    NonNegativeFloat,
    NonNegativeInt,
    ParamsError,
    PositiveFloat,
    PositiveInt,
    Size2,
    Split,
    from_section,
)
from train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from train.data import (
    Augmentation,
    ClipDataset,
    ClipSource,
    LengthGroupedSampler,
    collate_clips,
    embedding_dim,
    prepare_batch,
)
from train.models import build_model
from train.models.presets import feature_mismatches, get_preset
from train.models.registry import model_spec
from train.runlog import TrainLogger

NUM_CLASSES = {"binary": 2, "semantic": NUM_AVSS_CLASSES}


@dataclass
class TrainParams:
    """``train`` section of params.yaml.

    Keys left ``None`` (null) take the value of ``preset`` (:mod:`train.models.presets`), else the
    model's recommended :class:`~train.models.registry.TrainDefaults`, else the fallback in
    :data:`TRAIN_FALLBACKS`; :func:`resolve_train_params` fills them and the checkpoint records the result.
    """

    model: str | None = None  # a name from train.models.list_models(); null: the preset's, else combo_mnv2
    preset: str | None = None  # a name from train.models.presets.list_presets() (a paper row)
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides for the model builder
    task: Literal["binary", "semantic"] | None = None  # binary (S4/MS3: 2 classes) | semantic (AVSS: 71 classes)
    datasets: list[DatasetName] = field(default_factory=lambda: ["demo_s4"])
    split: Split = "train"
    size: Size2 | None = None  # model input [H, W] in training
    # Model input [H, W] when scoring and predicting (recorded in the checkpoint); null = the model's, else size.
    inference_size: Size2 | None = None
    audio_key: Literal["embeddings", "logmel"] | None = None  # logmel: the model runs VGGish (audio_encoder=vggish)
    batch_size: PositiveInt | None = None  # clips per step (per process under DDP)
    max_steps: PositiveInt | None = None
    lr: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None
    backbone_lr_mult: NonNegativeFloat | None = None
    poly_power: Annotated[float, Field(ge=0, le=10)] | None = None  # past 10 the lr is ~0 after a tenth of the run
    # Max global gradient norm (Mask2Former/COMBO clip the full model at 0.01); 0 = off.
    grad_clip: NonNegativeFloat | None = None
    freeze_backbone: bool | None = None  # keep ImageNet backbones fixed (fast CPU training); BN stays in eval mode
    augment: bool = True
    # Frames rescaled by a factor in [low, high] before the crop; 8x of a 512 frame is already a MAX_SIDE image.
    scale_range: list[Annotated[float, Field(gt=0, le=8)]] | None = None
    hflip: bool | None = None
    colour_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    seed: NonNegativeInt = 0
    num_workers: NonNegativeInt = 2
    threads: PositiveInt | None = None  # torch CPU threads; None = torch's default
    checkpoint_every: PositiveInt = 200
    keep_checkpoints: NonNegativeInt = 2  # intermediate checkpoints kept in RUN/checkpoints (newest)
    amp: Literal["auto", "bf16", "off"] | None = None  # auto: bf16 autocast on CUDA, off on CPU

    def __post_init__(self) -> None:
        scale = self.scale_range
        if scale is not None and (len(scale) != 2 or scale[0] > scale[1]):
            raise ValueError(f"train.scale_range must be [low, high] with low <= high, got {scale}")
        if self.preset is not None:
            get_preset(self.preset)  # UnknownNameError (a ValueError) listing the presets
        if self.model is not None:
            model_spec(self.model)


@dataclass
class ResolvedTrainParams(TrainParams):
    """:class:`TrainParams` with every null key filled, as :func:`resolve_train_params` returns them; resolving
    them again returns them as they are (``avs train`` resolves once, checks the task, and trains on them)."""


# Values of keys that neither the preset nor the model's TrainDefaults set.
TRAIN_FALLBACKS: dict[str, Any] = {
    "model": "combo_mnv2",
    "task": "binary",
    "audio_key": "embeddings",
    "poly_power": 0.9,
    "scale_range": [0.5, 2.0],
    "hflip": True,
    "amp": "auto",
}


def resolve_train_params(cfg: TrainParams) -> ResolvedTrainParams:
    """``cfg`` with every null key filled: the preset's value, else the model's default, else the fallback.

    The preset's ``model_config`` goes under ``cfg.model_config`` (the file's keys win). A preset whose
    model differs from an explicit ``train.model`` is an error (one of them is a mistake)."""
    if isinstance(cfg, ResolvedTrainParams):
        return cfg
    values = asdict(cfg)
    preset = get_preset(cfg.preset) if cfg.preset else None
    preset_values = dict(preset.train) if preset else {}
    if preset and cfg.model and cfg.model != preset_values["model"]:
        raise ParamsError(
            f"train.model is {cfg.model!r} but train.preset {cfg.preset!r} trains {preset_values['model']!r}: "
            "set train.model to null (or to the preset's model)"
        )
    values["model_config"] = {**preset_values.pop("model_config", {}), **cfg.model_config}
    model = cfg.model or preset_values.get("model") or TRAIN_FALLBACKS["model"]
    model_defaults = model_spec(model).train.as_params()
    for key, value in values.items():
        if value is None:
            for source in (preset_values, model_defaults, TRAIN_FALLBACKS):
                if source.get(key) is not None:
                    values[key] = source[key]
                    break
    values["model"] = model
    values["inference_size"] = values["inference_size"] or values["size"]
    return from_section(ResolvedTrainParams, values, "train")


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


def model_config_for(cfg: TrainParams, audio_dim: int | None) -> dict[str, Any]:
    config = {"num_classes": NUM_CLASSES[cfg.task], **cfg.model_config}
    if cfg.audio_key == "logmel":
        config.setdefault("audio_encoder", "vggish")
    elif audio_dim is not None:
        config.setdefault("audio_dim", audio_dim)
    return config


def freeze_backbone(model: nn.Module) -> None:
    """Fix the parameters the model names as its backbones' (ImageNet features stay as loaded)."""
    names = model.backbone_parameter_names()
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)


def set_train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    """Training mode, except frozen backbones (the modules whose parameters are all among
    ``model.backbone_parameter_names()``), whose BatchNorm statistics and dropout must not change."""
    model.train()
    if not frozen_backbone:
        return
    names = model.backbone_parameter_names()
    for prefix, module in model.named_modules():
        own = [f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters()]
        if own and all(name in names for name in own):
            module.eval()


def poly_lambda(max_steps: int, power: float):
    return lambda step: max(0.0, 1.0 - step / max_steps) ** power


@dataclass
class TrainState:
    """Everything one training run holds: data, model, optimiser, schedule and the step reached."""

    cfg: TrainParams
    info: DistInfo
    device: torch.device
    dataset: ClipDataset
    sampler: LengthGroupedSampler
    model: nn.Module
    train_model: nn.Module  # the model, or its DDP wrapper
    model_config: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    feature_params: dict[str, Any]
    step: int = 0

    @property
    def use_amp(self) -> bool:
        return self.device.type == "cuda" and self.cfg.amp in ("auto", "bf16")

    def payload(self) -> dict[str, Any]:
        """The checkpoint of this state (see :mod:`train.checkpoint`)."""
        return {
            "model_name": self.cfg.model,
            "model_config": self.model_config,
            # Every builder keyword as used (loss weights included), for the record; rebuilding uses model_config.
            "model_config_used": model_spec(self.cfg.model).resolved_config(self.model_config),
            "task": self.cfg.task,
            "feature_params": self.feature_params,
            "train_params": asdict(self.cfg),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }


def setup_training(cfg: TrainParams, data_root: str, shards: list[int]) -> TrainState:
    """Build the model first (it says which features it reads), then the dataset, sampler and optimiser.
    Null keys of ``cfg`` are resolved first unless it is :class:`ResolvedTrainParams` (:func:`resolve_train_params`);
    the state holds the result."""
    cfg = resolve_train_params(cfg)
    info = init_distributed()
    device = pick_device(info)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    audio_dim = embedding_dim(data_root, cfg.datasets, shards) if cfg.audio_key == "embeddings" else None
    model_config = model_config_for(cfg, audio_dim)
    model = build_model(cfg.model, **model_config).to(device)
    if cfg.freeze_backbone:
        freeze_backbone(model)
    source = ClipSource.for_inputs(model.inputs, data_root, cfg.size)
    augmentation = (
        Augmentation(tuple(cfg.size), tuple(cfg.scale_range), cfg.hflip, cfg.colour_jitter) if cfg.augment else None
    )
    dataset = ClipDataset(cfg.datasets, shards, cfg.split, source, augmentation, seed=cfg.seed)
    if len(dataset) == 0:
        raise RuntimeError(f"no '{cfg.split}' clips with all features in {cfg.datasets} under {data_root}")
    feature_params = dataset.feature_params()
    if cfg.preset:
        for mismatch in feature_mismatches(get_preset(cfg.preset), feature_params):
            warnings.warn(f"train.preset {cfg.preset}: {mismatch}", stacklevel=2)
    sampler = LengthGroupedSampler(
        [c.num_frames for c in dataset.clips],
        cfg.batch_size,
        seed=cfg.seed,
        rank=info.rank,
        world_size=info.world_size,
        drop_last=len(dataset) >= cfg.batch_size * info.world_size,
    )
    if len(sampler) == 0:
        raise RuntimeError(f"{len(dataset)} clips cannot fill one batch of {cfg.batch_size}")
    optimizer = torch.optim.AdamW(
        model.parameter_groups(lr=cfg.lr, weight_decay=cfg.weight_decay, backbone_lr_mult=cfg.backbone_lr_mult)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(cfg.max_steps, cfg.poly_power))
    train_model: nn.Module = model
    if info.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if device.type == "cuda" else None, find_unused_parameters=True
        )
    return TrainState(
        cfg,
        info,
        device,
        dataset,
        sampler,
        model,
        train_model,
        model_config,
        optimizer,
        scheduler,
        feature_params,
    )


def resume_or_start(state: TrainState, run_dir: Path, resume: str | bool) -> None:
    """Load the checkpoint to resume from (``True``: the latest in ``run_dir``), or start fresh: a fresh
    run owns its checkpoint folder, so checkpoints of an earlier run (other params) are removed and can
    never be picked up by a later ``--resume``."""
    resume_path = latest_checkpoint(run_dir) if resume is True else (Path(resume) if resume else None)
    if resume_path is None:
        if state.info.is_main:
            prune_checkpoints(run_dir, keep=0)
        return
    ckpt = load_checkpoint(resume_path, map_location=state.device)
    check_resumable(ckpt, state, resume_path)
    state.model.load_state_dict(ckpt["state_dict"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    state.step = int(ckpt["step"])
    torch.set_rng_state(ckpt["rng"]["torch"].cpu())
    if torch.cuda.is_available() and ckpt["rng"].get("cuda"):
        torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])


def check_resumable(ckpt: dict[str, Any], state: TrainState, path: Path) -> None:
    """Refuse to resume from a checkpoint of another run: another model or model config (weights that
    would be loaded into the wrong network, or not at all), or a step outside 0..max_steps (a run that
    would train nothing, or count from a negative step). One line naming the file."""
    if ckpt["model_name"] != state.cfg.model:
        raise CheckpointError(f"{path}: a checkpoint of {ckpt['model_name']!r}, not of train.model {state.cfg.model!r}")
    found, expected = _plain(ckpt["model_config"]), _plain(state.model_config)
    if found != expected:
        keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        raise CheckpointError(
            f"{path}: model config differs from this run's ({', '.join(f'{k}: {found.get(k)!r} vs {expected.get(k)!r}' for k in keys[:3])})"
        )
    step = ckpt["step"]
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= state.cfg.max_steps:
        raise CheckpointError(f"{path}: step {step!r} is outside this run's 0..{state.cfg.max_steps} (train.max_steps)")


def _plain(config: Any) -> Any:
    """``config`` as JSON would hold it (tuples as lists), so a saved config compares equal to a fresh one."""
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def train_step(state: TrainState, batch: dict[str, Any]) -> dict[str, Any]:
    """One optimiser step on ``batch``; returns the loss values and the gradient norm (None: not clipped)."""
    batch = prepare_batch(batch, state.device)  # uint8 -> normalised float32 (+ colour jitter) on the device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if state.use_amp else contextlib.nullcontext()
    with autocast:
        outputs = state.train_model(batch)
    losses = state.model.compute_losses(outputs, batch, step=state.step)
    state.optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    clip = state.cfg.grad_clip
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip) if clip > 0 else None
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    values = {k: float(v.detach()) for k, v in losses.items()}
    if not math.isfinite(values["total"]):
        raise RuntimeError(f"loss became {values['total']} at step {state.step} (lower train.lr?)")
    return {"losses": values, "grad_norm": float(grad_norm) if grad_norm is not None else None}


def epoch_loader(state: TrainState) -> tuple[int, DataLoader]:
    """(epoch, loader over the rest of that epoch from ``state.step``): the data order is a function
    of (seed, epoch), so a resumed run continues with exactly the batches it would have seen."""
    cfg = state.cfg
    epoch, position = divmod(state.step, len(state.sampler))
    state.sampler.set_epoch(epoch)
    state.dataset.set_epoch(epoch)
    batches = list(state.sampler)[position:]
    loader = DataLoader(
        state.dataset,
        batch_sampler=batches,
        collate_fn=collate_clips,
        num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
        pin_memory=state.device.type == "cuda",
        multiprocessing_context="fork" if cfg.num_workers > 0 else None,
    )
    return epoch, loader


def train(
    cfg: TrainParams,
    data_root: str,
    shards: list[int],
    run_dir: str | Path,
    *,
    resume: str | bool = False,
    progress: bool = True,
    log_path: str | Path | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model`` on the cached shards; write checkpoints under ``run_dir``.

    ``resume``: True = the latest checkpoint in ``run_dir``, a path = that checkpoint.
    ``log_path``: dvclive folder of the per-step curves (default ``run_dir/log``); ``progress`` False
    replaces the bar with a log line every 50 steps or 60 s (:class:`train.runlog.TrainLogger`).
    ``stop_after``: stop (with a checkpoint) after this many steps in this call (tests, time limits).
    Returns {"final": path of the final checkpoint or None, "steps": steps done, "losses": [...],
    "model": the model trained (``cfg.model`` resolved)}.
    """
    run_dir = Path(run_dir)
    state = setup_training(cfg, data_root, shards)
    cfg = state.cfg  # null keys resolved
    resume_or_start(state, run_dir, resume)
    logger = TrainLogger(
        Path(log_path) if log_path else run_dir / "log",
        f"train {cfg.model}",
        cfg.max_steps,
        state.step,
        bar=progress,
        enabled=state.info.is_main,
    )
    losses_seen: list[float] = []
    limit = cfg.max_steps if stop_after is None else min(cfg.max_steps, state.step + stop_after)
    set_train_mode(state.model, cfg.freeze_backbone)
    while state.step < limit:
        epoch, loader = epoch_loader(state)
        for batch in loader:
            result = train_step(state, batch)
            losses_seen.append(result["losses"]["total"])
            logger.step(state.step, _log_row(state, epoch, result))
            _save_periodically(state, run_dir)
            if state.step >= limit:
                break
    logger.close()
    final = _save_at_end(state, run_dir)
    if state.info.world_size > 1:
        dist.barrier()
    return {"final": final, "steps": state.step, "losses": losses_seen, "model": cfg.model}


def _log_row(state: TrainState, epoch: int, result: dict[str, Any]) -> dict[str, float]:
    """The scalars logged for one step (dvclive curves ``loss_*``, ``lr``, ``grad_norm``, ``epoch``). No wall
    time: the committed curves must come out the same on every run (the progress line shows the rate)."""
    grad_norm = result["grad_norm"]
    return {
        "epoch": epoch,
        "lr": state.optimizer.param_groups[0]["lr"],
        **{f"loss_{k}": v for k, v in result["losses"].items()},
        **({"grad_norm": grad_norm} if grad_norm is not None else {}),
    }


def _save_periodically(state: TrainState, run_dir: Path) -> None:
    if not state.info.is_main:
        return
    if state.step % state.cfg.checkpoint_every == 0 and state.step < state.cfg.max_steps:
        save_checkpoint(state.payload(), run_dir / "checkpoints" / f"step-{state.step:07d}.pt")
        prune_checkpoints(run_dir, keep=max(1, state.cfg.keep_checkpoints))


def _save_at_end(state: TrainState, run_dir: Path) -> Path | None:
    """The final model when max_steps is reached (intermediate checkpoints pruned to
    ``keep_checkpoints``), else a checkpoint to resume from."""
    if not state.info.is_main:
        return None
    final = None
    if state.step >= state.cfg.max_steps:
        final = run_dir / "model.pt"
        save_checkpoint(state.payload(), final)
        prune_checkpoints(run_dir, keep=state.cfg.keep_checkpoints)
    else:
        save_checkpoint(state.payload(), run_dir / "checkpoints" / f"step-{state.step:07d}.pt")
    return final
