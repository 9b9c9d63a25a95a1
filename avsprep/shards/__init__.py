"""The shard format, one concept per module (h5py ``_hl`` style).

``schema`` (datasets, shapes, attributes, constants), ``writer`` (``ShardWriter``),
``reader`` (``read_manifest``, ``ShardSet``), ``verify`` (``check_shard_file``,
``verify_shards``), ``integrity`` (the verification record), ``summary``
(``avsprep inspect``). The build pipeline itself (plan, workers, resume, manifest)
lives in ``avsprep.build``. The public names are re-exported here:
``from avsprep.shards import ShardSet``.
"""

from avsprep.shards.reader import ShardSet, read_manifest
from avsprep.shards.schema import (
    FRAME_SIZE, MANIFEST, MASK_DECODING, SCHEMA_VERSION, SHARD_BOX_COLUMNS, SPLIT_ORDER, dataset_schema,
)
from avsprep.shards.verify import check_shard_file, verify_shards
from avsprep.shards.writer import ShardWriter

__all__ = [
    "FRAME_SIZE", "MANIFEST", "MASK_DECODING", "SCHEMA_VERSION", "SHARD_BOX_COLUMNS", "SPLIT_ORDER",
    "ShardSet", "ShardWriter", "check_shard_file", "dataset_schema", "read_manifest",
    "verify_shards",
]
