"""The seviz store: one crash-safe HDF5 file of per-image SE excitation vectors.

Rooms: :mod:`~seviz.store.schema` (layout, record types, :class:`Provenance`), :mod:`~seviz.store.writer`
(:class:`StoreWriter`), :mod:`~seviz.store.lock` (:class:`StoreLock`: one writer per store),
:mod:`~seviz.store.reader` (:func:`open_store`, :class:`Store`; :mod:`~seviz.store._checks` holds
the checks it makes when a store is opened), :mod:`~seviz.store.attributions` (captum rankings kept
in a store), :mod:`~seviz.store.shards` (one shard per rank, combined into virtual datasets).
"""

from seviz.errors import StoreError, StoreLockedError
from seviz.store.attributions import Attributions, write_attributions
from seviz.store.lock import StoreLock
from seviz.store.reader import Store, open_store
from seviz.store.schema import SCHEMA_VERSION, TOPK, BlockInfo, Provenance, RecordedClass, SampleBatch
from seviz.store.shards import combine_shards, shard_folder, shard_path
from seviz.store.writer import StoreWriter

__all__ = [
    "SCHEMA_VERSION",
    "TOPK",
    "Attributions",
    "BlockInfo",
    "Provenance",
    "RecordedClass",
    "SampleBatch",
    "Store",
    "StoreError",
    "StoreLock",
    "StoreLockedError",
    "StoreWriter",
    "combine_shards",
    "open_store",
    "shard_folder",
    "shard_path",
    "write_attributions",
]
