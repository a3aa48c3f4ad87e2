"""The nodes of a serialized ONNX model, read from the protobuf wire format without importing ``onnx``.

Importing the ``onnx`` package costs about 0.6 s (its ``ml_dtypes`` dependency). A rerun of the audio stage
that computes no video needs only the encoder's provenance, and one piece of YAMNet's provenance
(whether its graph can be batched) depends on the graph's node structure: this module reads just that.

A ``ModelProto`` holds its graph in field 7; a ``GraphProto`` its nodes in field 1; a ``NodeProto`` its
inputs, outputs and name in fields 1, 2 and 3 (strings). Everything else (initializers, attributes,
value infos) is skipped by length, unread. A model whose bytes do not parse, or that stores its graph in
more than one field (protobuf would merge them), gives None: the caller then loads the graph with onnx.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

_MODEL_GRAPH = 7
_GRAPH_NODE = 1
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME = 1, 2, 3
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class WireFormatError(ValueError):
    """The bytes are not a protobuf message this reader understands."""


@dataclass(frozen=True)
class Node:
    """One graph node: its name, input and output tensor names (in order; "" for an omitted input)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireFormatError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field of one message; length-delimited values as views."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            value, pos = data[pos : pos + width], pos + width
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise WireFormatError(f"wire type {wire} (field {number}) is not used by ONNX")
        if pos > len(data) or number == 0:
            raise WireFormatError("truncated message")
        yield number, wire, value


def _strings(data: memoryview, wanted: tuple[int, ...]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {number: [] for number in wanted}
    for number, wire, value in _fields(data):
        if number in found:
            if wire != _LENGTH_DELIMITED:
                raise WireFormatError(f"field {number} is not a string")
            found[number].append(bytes(value).decode("utf-8"))  # type: ignore[arg-type]
    return found


def graph_nodes(model: bytes) -> list[Node] | None:
    """The nodes of the main graph of a serialized ``ModelProto``, in order; None when the bytes do not
    parse or hold the graph in several pieces."""
    try:
        graphs = [value for number, wire, value in _fields(memoryview(model)) if number == _MODEL_GRAPH]
        if len(graphs) != 1 or not isinstance(graphs[0], memoryview):
            return None
        nodes = []
        for number, wire, value in _fields(graphs[0]):
            if number != _GRAPH_NODE:
                continue
            if wire != _LENGTH_DELIMITED:
                return None
            strings = _strings(value, (_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME))  # type: ignore[arg-type]
            name = strings[_NODE_NAME][-1] if strings[_NODE_NAME] else ""  # a singular field repeated: the last wins
            nodes.append(Node(name, tuple(strings[_NODE_INPUT]), tuple(strings[_NODE_OUTPUT])))
        return nodes
    except (WireFormatError, UnicodeDecodeError):
        return None
