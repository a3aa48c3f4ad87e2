"""Every HDF5 read and write of the project (no other module of pipeline/, train/ or stages/ imports h5py).

Layout: ``{data_root}/{dataset}/{kind}/shard-N.h5`` where ``kind`` is the producing stage
(``extract``, ``audio``, ``proposals``). One group per video under ``/videos``, named by the
percent-encoded video id (ids may contain ``/``); the id itself is the group's ``video_id``
attribute. Arrays with 3 or more dimensions are chunked one frame per chunk and gzip-compressed,
so reading one frame decompresses one frame.

Reading (one fast path, :mod:`pipeline.shards.located`): :meth:`ShardReader.locate` records where an
array's bytes lie in the file (file offsets of its contiguous block or of each deflate chunk: a few
numbers and no handle, so the record can cross fork and pickle), and the bytes are read with plain
``pread`` calls and inflated with Intel ISA-L (``isal``; zlib without it), about twice as fast as the
zlib inside HDF5, byte-identical. :meth:`ShardReader.read` locates and reads at once; the training
loader locates once and reads later in its workers (:class:`ArrayReader`). The files are plain gzip
HDF5, readable by any h5py. A record
carries the file's identity (device, inode, size, mtime); reading it from a file that has since been
rewritten is refused. Layouts the record cannot describe (other filters, unwritten chunks, compact
storage, non-native or non-numeric types) are read through h5py by the same :class:`ArrayReader`.

Writing: through :func:`pipeline.atomic.atomic_path` (a random, exclusively created temporary name
beside the shard, locked while written), read back, then renamed into place only when the writer
closes without error; a crash leaves the previous file (or none).

Writing a long video a window at a time: :meth:`ShardWriter.begin_video` returns a
:class:`VideoWriter` (``write(key, start, block)``), digests computed as the blocks go by.
Reuse (:mod:`pipeline.shards.reuse`): a rerun copies unchanged videos from the previous shard, as stored.
Index (:mod:`pipeline.shards.index`): each shard lists its videos' identity attributes in one ``/_index``
dataset, so that a whole shard's reuse is decided in one read; a stage may record the file's sha256 beside it
(:mod:`pipeline.shards.file_digest`) to trust that index on its next run.

Identity (:mod:`pipeline.shards.identity`): every video carries the digests of its arrays; audio and
proposals videos carry the digest of the extracted video they were made from (``source_digest``).
"""

from pipeline.shards.errors import ShardError
from pipeline.shards.file_digest import digest_file, file_digest_mismatch, record_file_digest
from pipeline.shards.identity import (
    ARRAY_DIGESTS,
    CODE_DIGEST,
    CONTENT_DIGEST,
    INPUT_DIGEST,
    SOURCE_DIGEST,
    ArrayHasher,
    array_digest,
    input_digest,
    source_mismatch,
    verify_array,
)
from pipeline.shards.index import SHAPES
from pipeline.shards.located import ArrayLocation, FileStamp
from pipeline.shards.paths import failures_file, shard_file, shard_name
from pipeline.shards.reader import ArrayReader, ShardReader, read_arrays
from pipeline.shards.reuse import InOrder, PreviousShard
from pipeline.shards.video_writer import GZIP_LEVEL, STORED_DIGEST, VideoWriter
from pipeline.shards.writer import ShardWriter

__all__ = [
    "ARRAY_DIGESTS",
    "CODE_DIGEST",
    "CONTENT_DIGEST",
    "INPUT_DIGEST",
    "SOURCE_DIGEST",
    "SHAPES",
    "STORED_DIGEST",
    "GZIP_LEVEL",
    "ArrayHasher",
    "ArrayLocation",
    "ArrayReader",
    "FileStamp",
    "InOrder",
    "PreviousShard",
    "ShardError",
    "ShardReader",
    "ShardWriter",
    "VideoWriter",
    "array_digest",
    "digest_file",
    "file_digest_mismatch",
    "failures_file",
    "input_digest",
    "read_arrays",
    "record_file_digest",
    "shard_file",
    "shard_name",
    "source_mismatch",
    "verify_array",
]
