"""The one registry mechanism behind every pluggable part (audio encoders, proposal backends,
backbones, models): a name -> builder mapping filled by a decorator.

Every registry loads its members the same way (the modules named in ``modules`` are imported on
the first lookup or listing, so importing one part never builds the whole zoo) and answers an
unknown name with the same error, :class:`UnknownNameError`, listing the known names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TypeVar

B = TypeVar("B", bound=Callable)


class UnknownNameError(LookupError, ValueError):
    """A registry has no member of that name. The message lists the known ones.

    A ``LookupError`` (what a lookup raises) and a ``ValueError`` (a bad value in params.yaml), so
    callers that catch either keep working."""

    def __init__(self, kind: str, name: object, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {', '.join(self.known) or '(none)'}")

    def __str__(self) -> str:  # LookupError would otherwise quote the message like a KeyError
        return str(self.args[0])


class Registry(dict):
    """``name -> builder``; ``kind`` names the registry in error messages ("backbone", ...).

    ``modules``: modules that register the built-in members when imported; they are imported on
    the first :meth:`lookup` / :meth:`names` (they import the registry, so not at its creation).
    ``aliases``: short names accepted by :meth:`lookup` (``{"combo": "combo_mnv2"}``).
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = (), aliases: dict[str, str] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.modules = modules
        self.aliases = dict(aliases or {})
        self._loaded = False

    def register(self, name: str) -> Callable[[B], B]:
        """Decorator adding ``builder`` under ``name``; a second, different builder is an error."""

        def decorator(builder: B) -> B:
            self.add(name, builder)
            return builder

        return decorator

    def add(self, name: str, builder: Callable) -> None:
        """Register ``builder`` under ``name`` (the decorator's work, for builders made by a function)."""
        if name in self and self[name] is not builder:
            raise ValueError(f"{self.kind} {name!r} is already registered by {_origin(self[name])}")
        self[name] = builder

    def load(self) -> None:
        """Import the modules of the built-in members (once)."""
        if self._loaded:
            return
        self._loaded = True
        for module in self.modules:
            importlib.import_module(module)

    def lookup(self, name: str) -> Callable:
        """The builder of ``name`` (or of the name an alias stands for); ``UnknownNameError`` otherwise."""
        self.load()
        resolved = self.aliases.get(name, name) if isinstance(name, str) else name
        if resolved not in self:
            raise UnknownNameError(self.kind, name, self.names())
        return self[resolved]

    def names(self) -> list[str]:
        """Sorted names of the registered members (built-ins loaded first)."""
        self.load()
        return sorted(self)


def _origin(builder: Callable) -> str:
    return getattr(builder, "__module__", None) or type(builder).__module__
