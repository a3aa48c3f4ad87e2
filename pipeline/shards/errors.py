"""The error every shard read or write raises for a missing, unreadable or incomplete shard."""

from __future__ import annotations


class ShardError(RuntimeError):
    """A shard file is missing, unreadable or lacks what was asked for."""
