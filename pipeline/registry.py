"""The one registry mechanism behind every pluggable part (audio encoders, proposal backends,
backbones, models): a name -> builder mapping filled by a decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

B = TypeVar("B", bound=Callable)


class Registry(dict):
    """``name -> builder``; ``kind`` names the registry in error messages ("backbone", ...).

    Lookups (``name in reg``, ``reg[name]``) are plain dict operations, so each user keeps its own
    "unknown name" error with the choices it wants to show.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[B], B]:
        """Decorator adding ``builder`` under ``name``; a second, different builder is an error."""

        def decorator(builder: B) -> B:
            if name in self and self[name] is not builder:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self[name].__module__}")
            self[name] = builder
            return builder

        return decorator

    def names(self) -> list[str]:
        return sorted(self)
