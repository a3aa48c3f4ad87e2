"""Forward+backward time per clip and parameter counts of every registered model config.

CPU (one thread, as the conventions ask) and, when CUDA is available, GPU with bf16 autocast.
Prints a table and writes JSON (``--out``, default benchmarks/results/models.json).

    python benchmarks/bench_models.py [--models combo_tiny combo_mnv2] [--frames 5] [--size 224]

Paper-size configs (``combo_r50``, ``combo_pvt_b5``, ...) run on CPU at ``--big-size`` (default
112) to keep the run to minutes; the table says which size each row used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.data import prepare_batch  # noqa: E402
from train.models import build_model, list_models  # noqa: E402

BIG_MODEL_MARKERS = ("r50", "pvt_b5")
# Overrides so that every config builds offline (no weight files needed for timing).
OFFLINE_OVERRIDES = {"combo_mnv2": {"pretrained": None}}


def make_batch(model: torch.nn.Module, frames: int, size: int, device: torch.device) -> dict:
    """Synthetic one-clip loader batch (uint8 images and masks, docs/CONVENTIONS.md) made into the model
    batch by ``prepare_batch``, as training does."""
    batch = {
        "frames": torch.randint(0, 256, (1, frames, 3, size, size), dtype=torch.uint8),
        "maskiges": torch.randint(0, 256, (1, frames, 3, size, size), dtype=torch.uint8),
        "masks": torch.randint(0, getattr(model, "num_classes", 2), (1, frames, size, size), dtype=torch.uint8),
        "labelled": torch.ones(1, frames, dtype=torch.bool),
        "logmel": torch.randn(1, frames, 96, 64),
    }
    audio_dim = getattr(model, "audio_dim", None)
    if audio_dim is None and hasattr(model, "bilateral_fusion"):
        audio_dim = model.bilateral_fusion.audio_norm.normalized_shape[0]
    batch["audio"] = torch.randn(1, frames, audio_dim or 128)
    return prepare_batch(batch, device)


def time_step(model: torch.nn.Module, batch: dict, device: torch.device, repeats: int, bf16: bool) -> float:
    """Median seconds of model(batch) + compute_losses + backward."""
    times = []
    for _ in range(repeats + 1):  # first run is warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = model(batch)
            losses = model.compute_losses(outputs, batch)
        losses["total"].backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    return times[len(times) // 2]


def write_json(path: Path, payload: dict) -> None:
    """Write to a temporary file in the same folder, then rename (no partial output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=2)
        temp = handle.name
    os.chmod(temp, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(temp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="model names (default: all registered)")
    parser.add_argument("--frames", type=int, default=5, help="frames per clip (T)")
    parser.add_argument("--size", type=int, default=224, help="frame size for small configs")
    parser.add_argument("--big-size", type=int, default=112, help="CPU frame size for paper-size configs")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/models.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models or list_models()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_gpu:
        devices.append(torch.device("cuda"))

    rows = []
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. VGGish built without weights
            torch.manual_seed(0)
            model = build_model(name, **OFFLINE_OVERRIDES.get(name, {}))
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        row = {"model": name, "params_M": round(params / 1e6, 2), "trainable_M": round(trainable / 1e6, 2)}
        for device in devices:
            big = any(marker in name for marker in BIG_MODEL_MARKERS)
            size = args.big_size if (big and device.type == "cpu") else args.size
            model.to(device).train()
            batch = make_batch(model, args.frames, size, device)
            try:
                seconds = time_step(model, batch, device, args.repeats, bf16=device.type == "cuda")
                row[f"{device.type}_s_per_clip"] = round(seconds, 4)
            except Exception as error:  # noqa: BLE001 - reported in the table, benchmark goes on
                row[f"{device.type}_s_per_clip"] = None
                row[f"{device.type}_error"] = f"{type(error).__name__}: {error}"[:200]
            row[f"{device.type}_size"] = size
            model.to("cpu")
        rows.append(row)
        print(json.dumps(row), flush=True)

    header = f"{'model':<18}{'params M':>10}{'trainable M':>13}{'CPU s/clip':>12}{'CPU size':>10}"
    if len(devices) > 1:
        header += f"{'GPU bf16 s/clip':>17}{'GPU size':>10}"
    print(f"\nforward+backward per clip of T={args.frames} frames, CPU threads={args.threads}")
    print(header)
    for row in rows:
        line = (
            f"{row['model']:<18}{row['params_M']:>10.2f}{row['trainable_M']:>13.2f}"
            f"{row.get('cpu_s_per_clip') or float('nan'):>12.3f}{row['cpu_size']:>10}"
        )
        if len(devices) > 1:
            line += f"{row.get('cuda_s_per_clip') or float('nan'):>17.4f}{row['cuda_size']:>10}"
        print(line)
    payload = {
        "frames": args.frames,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if len(devices) > 1 else None,
        "rows": rows,
    }
    write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
