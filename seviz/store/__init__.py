"""The seviz store: one crash-safe HDF5 file of per-image SE excitation vectors.

Rooms: :mod:`~seviz.store.schema` (layout, record types, :class:`Provenance`), :mod:`~seviz.store.writer`
(:class:`StoreWriter`), :mod:`~seviz.store.reader` (:func:`open_store`, :class:`Store`;
:mod:`~seviz.store._checks` holds the checks it makes when a store is opened),
:mod:`~seviz.store.attributions` (captum rankings kept in a store).
"""

from seviz.errors import StoreError
from seviz.store.attributions import Attributions, write_attributions
from seviz.store.reader import Store, open_store
from seviz.store.schema import SCHEMA_VERSION, TOPK, BlockInfo, Provenance, RecordedClass, SampleBatch
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
    "StoreWriter",
    "open_store",
    "write_attributions",
]
