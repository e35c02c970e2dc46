"""Recording on many processes and machines under ``torchrun``: one shard per rank, one store.

torchrun (torch.distributed elastic, also what ``srun torchrun`` runs on SLURM)
starts the same ``seviz record`` command in every process and gives each its
place in the environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and
``MASTER_ADDR``/``MASTER_PORT`` for the process group). :func:`across_ranks`
wraps :func:`~seviz.recording.record`; without those variables (or with one
process) it changes nothing. Under torchrun every rank

1. builds the same deterministic image list (files in sorted order) and records
   its own contiguous slice (:meth:`Shard.bounds`; slice sizes differ by at most
   one image, and no image is repeated: torch's ``DistributedSampler`` would pad
   the last slice with duplicates). A fast mode is calibrated on the first batch
   of the whole list, so every rank measures the same images;
2. writes its slice into its own crash-safe shard, a normal seviz store
   (:func:`seviz.store.shard_path`: ``store.shards/shard-00001-of-00004.h5``
   beside ``--out store.h5``), on ``cuda:LOCAL_RANK`` or the CPU;
3. waits for the others; rank 0 then writes ``store.h5``, virtual datasets over
   the shards in the single-process order (:func:`seviz.store.combine_shards`),
   and every rank returns the same summary, which lists every rank's.

``--resume`` after any rank died (torchrun then stops the others) finishes each
shard where it stopped; a shard that was complete is kept. Resuming with another
world size is refused: every shard's slice depends on it, and re-slicing would
mean moving committed rows between files.

The ranks coordinate over a gloo process group on CPUs and GPUs alike: it only
carries barriers and a few hundred bytes of JSON (summaries, not pickles), and
gloo, unlike NCCL, lets several processes share one GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from seviz.errors import DeviceError, RecordError, SevizError, StoreError
from seviz.store.shards import (
    COMPLETE,
    INCOMPLETE,
    MISSING,
    UNREADABLE,
    combine_shards,
    describe_shards,
    existing_shards,
    shard_folder,
    shard_path,
    shard_state,
    shard_summary,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
S = TypeVar("S")

# A rank that finished its slice (or resumes a shard that was complete) waits for the
# slowest one, which may take hours on CPUs. torchrun stops every rank as soon as one
# dies, and gloo fails at once when a peer's connection closes, so only a true hang
# ever waits this long.
_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Shard:
    """One rank's place in a recording: which slice of the image list it records."""

    rank: int
    world_size: int
    local_rank: int = 0

    def bounds(self, total: int) -> tuple[int, int]:
        """The contiguous ``[start, stop)`` of ``total`` image-list entries this rank records."""
        return total * self.rank // self.world_size, total * (self.rank + 1) // self.world_size

    def take(self, items: Sequence[Any]) -> list[Any]:
        """This rank's slice of the (same on every rank) image list."""
        start, stop = self.bounds(len(items))
        return list(items[start:stop])

    def attrs(self) -> dict[str, int]:
        """Root attributes of the rank's shard."""
        return {"rank": self.rank, "world_size": self.world_size}

    def run_config(self, total: int) -> dict[str, int]:
        """What the shard's run_config adds: a resume must slice the list the same way."""
        start, stop = self.bounds(total)
        return {"world_size": self.world_size, "rank": self.rank, "shard_start": start, "shard_stop": stop}

    @property
    def label(self) -> str:
        """The progress bar's name."""
        return f"rank {self.rank}/{self.world_size}"


def shard_from_environment(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The rank torchrun started this process as, or None outside torchrun (or with one process)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise RecordError(
            f"RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r}, "
            f"LOCAL_RANK={env.get('LOCAL_RANK')!r} must be integers; start seviz with torchrun, "
            "or unset them"
        ) from None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size:
        raise RecordError(f"RANK={rank} is not below WORLD_SIZE={world_size}; start seviz with torchrun")
    return Shard(rank, world_size, local_rank)


def rank_device(device: str, shard: Shard) -> str:
    """``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK`` on a rank (if CUDA is there); others stay."""
    import torch

    if device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    count = torch.cuda.device_count()
    if shard.local_rank >= count:
        raise DeviceError(
            f"rank {shard.rank} has LOCAL_RANK={shard.local_rank}, but this node has {count} CUDA "
            f"device(s); start at most {count} processes per node (--nproc-per-node), or pass "
            "--device cuda:0 to share one GPU"
        )
    return f"cuda:{shard.local_rank}"


class _Group:
    """The ranks' gloo process group: barriers and JSON messages."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def all_gather_json(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (plain JSON data), in rank order, on every rank; also a barrier."""
        import torch
        import torch.distributed as dist

        data = json.dumps(value).encode()
        world = dist.get_world_size(self.group)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64), group=self.group)
        longest = max(int(s.item()) for s in sizes)
        mine = torch.zeros(longest, dtype=torch.uint8)
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        everyone = [torch.zeros(longest, dtype=torch.uint8) for _ in range(world)]
        dist.all_gather(everyone, mine, group=self.group)
        return [
            json.loads(bytes(t[: int(s.item())].tolist()).decode())
            for t, s in zip(everyone, sizes, strict=True)
        ]


@contextmanager
def process_group(shard: Shard) -> Iterator[_Group]:
    """A gloo process group over the ranks (torchrun's env:// rendezvous), destroyed on exit.

    A process group the caller already made is used (a gloo one beside it if it is not
    gloo) and left as it was.
    """
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(
            backend="gloo", rank=shard.rank, world_size=shard.world_size, timeout=_TIMEOUT
        )
        group = None
    else:
        group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=_TIMEOUT)
    try:
        yield _Group(group)
    finally:
        if owned:
            dist.destroy_process_group()


def across_ranks(summary_type: type[S]) -> Callable[[Callable[P, S]], Callable[P, S]]:
    """Make ``record`` record this rank's shard when torchrun started the process (see the module)."""

    def decorate(record: Callable[P, S]) -> Callable[P, S]:
        signature = inspect.signature(record)

        @functools.wraps(record)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> S:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            options = dict(bound.arguments)
            if options.get("shard") is not None:  # already a rank's own call
                return record(*args, **kwargs)
            if dataclasses.is_dataclass(options["model"]):  # record(config): its fields are the options
                config = options["model"]
                options = {
                    **{f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
                    "shard": None,
                }
            shard = shard_from_environment()
            if shard is None:
                _refuse_resuming_shards_alone(Path(options["out"]), bool(options["resume"]))
                return record(*args, **kwargs)
            return _record_rank(record, shard, options, summary_type)

        return wrapper

    return decorate


def _record_rank(record: Callable[..., Any], shard: Shard, options: dict[str, Any], summary_type: Any) -> Any:
    out, resume = Path(options["out"]), bool(options["resume"])
    overwrite = bool(options["overwrite"]) and not resume
    # Checked before the process group's rendezvous, which no rank passes before every
    # rank has joined: so no rank sees a shard another rank of this run has begun.
    _check_start(out, shard, resume, overwrite)
    device = rank_device(str(options["device"]), shard)
    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(device)  # pinned memory and nvJPEG use the current device
    path = shard_path(out, shard.rank, shard.world_size)
    with process_group(shard) as group:
        state = shard_state(path) if resume else MISSING
        if state == COMPLETE:
            log.info("rank %d: shard %s is complete already; waiting for the other ranks", shard.rank, path)
            own = summary_type(**shard_summary(path), seconds=0.0, images_per_second=0.0)
        else:
            own = record(
                **{
                    **options,
                    "out": path,
                    "shard": shard,
                    "device": device,
                    "resume": state == INCOMPLETE,
                    # A shard whose run stopped before it set the store up holds nothing: start it again.
                    "overwrite": overwrite or state == UNREADABLE,
                }
            )
        ranks = [
            summary_type(**{**summary, "ranks": ()})
            for summary in group.all_gather_json(dataclasses.asdict(own))
        ]
        outcome: dict[str, str] = {}
        if shard.rank == 0:
            try:
                combine_shards(out, shard.world_size, {"ranks": [_plain(r) for r in ranks]})
            except SevizError as error:
                outcome = {"error": str(error)}
        outcome = group.all_gather_json(outcome)[0]
    if "error" in outcome:
        raise StoreError(f"rank 0 could not combine the shards into {str(out)!r}: {outcome['error']}")
    return _combined_summary(out, ranks)


def _plain(summary: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(summary).items() if k != "ranks"}


def _combined_summary(out: Path, ranks: list[Any]) -> Any:
    """The whole recording's summary: totals over the ranks, which ran side by side."""
    seconds = max(r.seconds for r in ranks)
    new = sum(r.images_per_second * r.seconds for r in ranks)
    return dataclasses.replace(
        ranks[0],
        store=str(out),
        samples=sum(r.samples for r in ranks),
        skipped=sum(r.skipped for r in ranks),
        skipped_files=tuple(path for r in ranks for path in r.skipped_files),  # rank slices, in list order
        seconds=seconds,
        images_per_second=new / seconds if seconds > 0 else 0.0,
        complete=all(r.complete for r in ranks),
        ranks=tuple(ranks),
    )


def _check_start(out: Path, shard: Shard, resume: bool, overwrite: bool) -> None:
    """Before any model is loaded, on every rank: the store and its shards allow this run.

    Every rank sees the same files (the output must be on a filesystem all nodes
    share), so every rank reaches the same verdict.
    """
    found = existing_shards(out)
    others = {w: paths for w, paths in found.items() if w != shard.world_size}
    ours = found.get(shard.world_size, [])
    if overwrite and not resume:  # as in one process, --resume wins
        if shard.rank == 0:
            # Its shards are about to be rewritten: a store over them would read a mix.
            out.unlink(missing_ok=True)
            for paths in others.values():
                for stale in paths:
                    stale.unlink(missing_ok=True)
        return
    if out.exists() and not resume:
        raise FileExistsError(
            f"store {str(out)!r} already exists; pass --overwrite to replace it or --resume to finish it"
        )
    if out.exists() and shard_state(out) == COMPLETE:
        raise StoreError(
            f"cannot resume: store {str(out)!r} is already complete; drop --resume, or pass --overwrite "
            "to record it again"
        )
    if out.exists():
        raise StoreError(
            f"cannot resume {str(out)!r} with {shard.world_size} ranks: one process recorded it; "
            "resume it with the same command without torchrun"
        )
    if others:
        world = min(others)
        raise StoreError(
            f"cannot {'resume' if resume else 'record'} {str(out)!r} with {shard.world_size} ranks: "
            f"{shard_folder(out)} holds {describe_shards(others)}, and each shard's slice of the "
            f"images depends on the number of ranks; {'resume' if resume else 'finish it'} with "
            f"WORLD_SIZE={world} (--nnodes x --nproc-per-node), or record again with --overwrite"
        )
    if resume and not ours:
        raise FileNotFoundError(f"cannot --resume: store {str(out)!r} and its shards do not exist")
    if not resume and ours:
        raise FileExistsError(
            f"{shard_folder(out)} holds an unfinished recording of {str(out)!r} by {shard.world_size} "
            "ranks; pass --resume to finish it or --overwrite to record it again"
        )


def _refuse_resuming_shards_alone(out: Path, resume: bool) -> None:
    """One process cannot finish a store that several ranks began."""
    if resume and not out.exists():
        found = existing_shards(out)
        if found:
            world = min(found)
            raise StoreError(
                f"cannot resume {str(out)!r} in one process: {shard_folder(out)} holds "
                f"{describe_shards(found)}; resume it under torchrun with WORLD_SIZE={world} "
                "(the same --nnodes and --nproc-per-node)"
            )
