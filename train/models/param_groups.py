"""AdamW parameter groups shared by every model: (backbone | head) x (decay | no decay)."""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn as nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Embedding)


def split_parameter_groups(
    model: nn.Module,
    backbone_names: set[str],
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float,
    no_decay_name_parts: Iterable[str] = (),
) -> list[dict]:
    """Trainable parameters of ``model`` as AdamW groups: backbone parameters (by qualified name) at
    ``lr * backbone_lr_mult``; no weight decay on norm/embedding modules, 1-d parameters (biases,
    layer scales) and names containing one of ``no_decay_name_parts``; frozen parameters left out."""
    parts = tuple(no_decay_name_parts)
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, NORM_TYPES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = id(param) in no_decay_ids or param.ndim <= 1 or any(p in name for p in parts)
        groups.setdefault((name in backbone_names, no_decay), []).append(param)
    result = []
    for (is_backbone, no_decay), params in sorted(groups.items()):
        result.append(
            {
                "params": params,
                "lr": lr * (backbone_lr_mult if is_backbone else 1.0),
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{'backbone' if is_backbone else 'head'}_{'no_decay' if no_decay else 'decay'}",
            }
        )
    return result
