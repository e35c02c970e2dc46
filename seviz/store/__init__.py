"""The seviz store: one crash-safe HDF5 file of per-image SE excitation vectors.

Rooms: :mod:`~seviz.store.schema` (layout, record types), :mod:`~seviz.store.writer`
(:class:`StoreWriter`), :mod:`~seviz.store.lock` (:class:`StoreLock`: one writer per store),
:mod:`~seviz.store.reader` (:func:`open_store`, :class:`Store`),
:mod:`~seviz.store.attributions` (captum rankings kept in a store).
"""

from seviz.errors import StoreError, StoreLockedError
from seviz.store.attributions import Attributions, write_attributions
from seviz.store.lock import StoreLock
from seviz.store.reader import Store, open_store
from seviz.store.schema import SCHEMA_VERSION, TOPK, BlockInfo, SampleBatch
from seviz.store.writer import StoreWriter

__all__ = [
    "SCHEMA_VERSION",
    "TOPK",
    "Attributions",
    "BlockInfo",
    "SampleBatch",
    "Store",
    "StoreError",
    "StoreLock",
    "StoreLockedError",
    "StoreWriter",
    "open_store",
    "write_attributions",
]
