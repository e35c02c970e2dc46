"""The samples with the highest and lowest gate of every channel of a block (the app's channel explorer).

One streamed pass over the block keeps, per channel, the ``k`` largest and
``k`` smallest gates seen so far and their sample indices, so memory does not
grow with the number of samples. Ties go to the earlier sample, so the result
is a deterministic function of the store: each gate is ranked by one 64-bit
key, its value's order-preserving bit pattern above its (reversed) index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from seviz.errors import AnalysisError, StoreError
from seviz.store import Store, open_store

_CHUNK_ELEMENTS = 1 << 21  # gates per chunk: 16 MiB of keys
_INDEX_BITS = 32
_INDEX_MASK = np.uint64((1 << _INDEX_BITS) - 1)


@dataclass(frozen=True, eq=False)
class ChannelExtremes:
    """Per channel of one block: the samples with the ``k`` highest and ``k`` lowest gates.

    Arrays are (channels, k): ``top_index[c, 0]`` is the sample with the highest
    gate of channel ``c`` and ``top_value[c, 0]`` that gate; ``bottom_*`` start
    with the lowest. Fewer than ``k`` samples leave the store's size.
    """

    block: str
    k: int
    top_index: np.ndarray
    top_value: np.ndarray
    bottom_index: np.ndarray
    bottom_value: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.top_index.shape[0])

    def channel(self, channel: int) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """``(highest, lowest)`` of one channel as lists of (sample index, gate), most extreme first.

        Raises:
            StoreError: The block has no such channel.
        """
        if not 0 <= int(channel) < self.channels:
            raise StoreError(
                f"channel {channel} is not in block {self.block}; it has channels 0-{self.channels - 1}"
            )
        c = int(channel)
        top = [(int(i), float(v)) for i, v in zip(self.top_index[c], self.top_value[c], strict=True)]
        low = [(int(i), float(v)) for i, v in zip(self.bottom_index[c], self.bottom_value[c], strict=True)]
        return top, low


def channel_extremes(
    store: Store | str | os.PathLike, block: str, k: int = 8, chunk_rows: int | None = None
) -> ChannelExtremes:
    """The ``k`` samples with the highest and the ``k`` with the lowest gate, for every channel of ``block``.

    Args:
        store: An open store or its path (an incomplete store is read up to its committed samples).
        block: The block, e.g. ``"SE_5_2"``.
        k: Samples kept per channel and side.
        chunk_rows: Rows read at once (default: about 2 M gates). Changes speed only.

    Raises:
        StoreError: Not a store, no samples, or no such block.
        AnalysisError: ``k`` is not positive.
    """
    if not isinstance(store, Store):
        with open_store(store) as opened:
            return channel_extremes(opened, block, k, chunk_rows)
    if k < 1:
        raise AnalysisError(f"k={k} must be at least 1")
    info = store.block(block)
    samples = len(store)
    if samples == 0:
        raise StoreError(f"store {str(store.path)!r} has no committed samples yet; record some first")
    if samples >= 1 << _INDEX_BITS:
        raise AnalysisError(
            f"store {str(store.path)!r} has {samples} samples, more than the 2**32 ranked here"
        )
    k = min(int(k), samples)
    rows = chunk_rows or max(k, _CHUNK_ELEMENTS // max(1, info.channels))
    top = np.empty((0, info.channels), dtype=np.uint64)
    bottom = np.empty((0, info.channels), dtype=np.uint64)
    for row_slice, gates in store.iter_chunks(block, rows=rows):
        order = _sortable(np.ascontiguousarray(gates, dtype=np.float32))
        index = _INDEX_MASK - np.arange(row_slice.start, row_slice.stop, dtype=np.uint64)[:, None]
        top = _keep_largest(np.concatenate([top, (order << np.uint64(_INDEX_BITS)) | index]), k)
        bottom = _keep_largest(np.concatenate([bottom, (~order << np.uint64(_INDEX_BITS)) | index]), k)
    top_index, top_order = _decode(top)
    bottom_index, bottom_order = _decode(bottom)
    return ChannelExtremes(
        block=block,
        k=k,
        top_index=top_index,
        top_value=_value(top_order),
        bottom_index=bottom_index,
        bottom_value=_value(~bottom_order & _INDEX_MASK),
    )


def _sortable(values: np.ndarray) -> np.ndarray:
    """Float32 values as uint64 whose order is the values' order (IEEE bits, negatives flipped)."""
    bits = values.view(np.uint32).astype(np.uint64)
    negative = (bits >> np.uint64(31)) == 1
    return np.where(negative, ~bits & _INDEX_MASK, bits | np.uint64(1 << 31))


def _value(order: np.ndarray) -> np.ndarray:
    """The float32 values of :func:`_sortable` keys."""
    positive = (order >> np.uint64(31)) == 1
    bits = np.where(positive, order & np.uint64(0x7FFFFFFF), ~order & _INDEX_MASK)
    return bits.astype(np.uint32).view(np.float32)


def _keep_largest(keys: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest keys of every column, largest first (keys are unique: they hold the index)."""
    if len(keys) > k:
        keys = np.take_along_axis(keys, np.argpartition(keys, len(keys) - k, axis=0)[-k:], axis=0)
    return np.sort(keys, axis=0)[::-1]


def _decode(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(channels, k) sample indices and value keys of kept keys stored as (k, channels)."""
    index = (_INDEX_MASK - (keys & _INDEX_MASK)).astype(np.int64).T.copy()
    return index, (keys >> np.uint64(_INDEX_BITS)).T.copy()
