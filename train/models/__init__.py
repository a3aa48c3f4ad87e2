"""Models of the AVS toolkit.

Model modules register themselves with :func:`register_model`; :func:`build_model`
imports the known model modules lazily so that ``import train.models`` stays cheap
and parts (backbones, pixel decoder) can be imported without pulling in every model.
"""

from __future__ import annotations

from train.models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
