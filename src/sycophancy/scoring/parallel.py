"""Data-parallel scoring: each process scores a contiguous share of the prompts, and every process
gets every result back in the original order, so decisions, metrics and records match one process.

`processes()` (evaluate.py's run body) joins the processes a launcher started (`torchrun`,
`accelerate launch`, `srun torchrun`: WORLD_SIZE > 1) into a gloo group and turns sharding on for
the run. While it is on, or when the model asks for bf16 autocast, forward.py's `score_options` and
`generate` hand each call to the functions of the same name here (`routed`). Every process must
make the same calls on the same prompts (the probes are deterministic); the gather checks that.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from sycophancy.errors import UserError
from sycophancy.models import LoadedModel
from sycophancy.models.devices import autocast

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's rank among `size` processes scoring together (gloo `group`; None alone)."""

    rank: int = 0
    size: int = 1
    group: Any = None

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0


_world: ContextVar[World | None] = ContextVar("sycophancy_world", default=None)  # sharding on
_inside: ContextVar[bool] = ContextVar("sycophancy_routed", default=False)  # a routed call runs


def bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous share [lo, hi) of n items: shares differ by at most one item (the
    first n % size ranks take one more) and are empty where there are more ranks than items."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside a world of {size} processes")
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def shard(items: Sequence, size: int, rank: int) -> list:
    """The items of rank `rank`'s share, in their order."""
    lo, hi = bounds(len(items), size, rank)
    return list(items[lo:hi])


def merge(parts: Sequence[Sequence]) -> list:
    """The shares of ranks 0, 1, ... put back together in the original order."""
    return [x for part in parts for x in part]


def merge_scores(parts: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Score shares ([n_r, k] each, some possibly empty) as one float32 [n, k] array."""
    return np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, k) for p in parts])


def routed(lm: LoadedModel) -> bool:
    """Whether a scoring call goes through this module: sharding is on or the model autocasts."""
    return not _inside.get() and (_world.get() is not None or bool(getattr(lm, "autocast", False)))


def score_options(
    score: Callable[..., np.ndarray],
    lm: LoadedModel,
    prompts: list[str],
    options: Sequence[Sequence[str]] | Sequence[str],
    batch_size: int = 16,
    progress: str | None = None,
) -> np.ndarray:
    """`score` (forward.score_options) on this process's share of the prompts; shares gathered."""
    world = _world.get()
    flat = bool(options) and all(isinstance(o, str) for o in options)
    if world is None or (not flat and len(options) != len(prompts)):
        with _local(lm):  # one process, or a call forward refuses identically on every rank
            return score(lm, prompts, options, batch_size, progress)
    k = len(options) if flat else (len(options[0]) if options else 0)
    mine = shard(prompts, world.size, world.rank)
    my_options = options if flat else shard(options, world.size, world.rank)

    def run() -> np.ndarray:
        if not mine:
            return np.zeros((0, k), dtype=np.float32)
        label = progress if world.main else None
        return score(lm, mine, my_options, batch_size, label)

    parts = _gather(world, lm, run, ("score", prompts, options, batch_size))
    return merge_scores(parts, k)


def generate(
    generate_texts: Callable[..., list[str]],
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 16,
    batch_size: int = 8,
    progress: str | None = None,
) -> list[str]:
    """`generate_texts` (forward.generate) on this process's share of the prompts; shares gathered."""
    world = _world.get()
    if world is None:
        with _local(lm):
            return generate_texts(lm, prompts, max_new_tokens, batch_size, progress)
    mine = shard(prompts, world.size, world.rank)

    def run() -> list[str]:
        label = progress if world.main else None
        return generate_texts(lm, mine, max_new_tokens, batch_size, label) if mine else []

    return merge(_gather(world, lm, run, ("generate", prompts, max_new_tokens, batch_size)))


@contextmanager
def _local(lm: LoadedModel) -> Iterator[None]:
    """Run forward.py's own scoring (no routing back here), under autocast if the model asks."""
    token = _inside.set(True)
    try:
        with autocast(lm):
            yield
    finally:
        _inside.reset(token)


def digest(call: tuple) -> str:
    """A short fingerprint of a scoring call's inputs, equal on every rank that makes the same call."""
    return hashlib.sha256(repr(call).encode("utf-8")).hexdigest()[:16]


def _gather(world: World, lm: LoadedModel, run, call: tuple) -> list:
    """Run this rank's share, gather every rank's result (all ranks in rank order), and refuse
    results of ranks that scored different prompts; a rank's failure is raised on every rank."""
    import torch.distributed as dist

    error: BaseException | None = None
    result = None
    try:
        with _local(lm):
            result = run()
    except Exception as exc:  # every rank must reach the gather, or the others wait forever
        error = exc
    mine = (digest(call), None if error is None else f"{type(error).__name__}: {error}", result)
    everyone: list = [None] * world.size
    dist.all_gather_object(everyone, mine, group=world.group)
    if error is not None:
        raise error
    failed = [(r, e) for r, (_, e, _) in enumerate(everyone) if e is not None]
    if failed:
        rank, message = failed[0]
        raise RuntimeError(f"data-parallel scoring failed on rank {rank}: {message}")
    if len({d for d, _, _ in everyone}) > 1:
        raise UserError(
            f"The {world.size} data-parallel processes were asked to score different prompts, so "
            "their results cannot be merged. Every process must run the same config on the same "
            "data (same files on every node, same overrides); start them with one torchrun command."
        )
    return [part for _, _, part in everyone]


def from_main(world: World, value: Any) -> Any:
    """Rank 0's `value` on every rank (`value` itself in one process)."""
    if world.size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=world.group)
    return box[0]


@contextmanager
def processes(env: dict | None = None) -> Iterator[World]:
    """This run's processes: one alone, or the WORLD_SIZE processes a launcher started, joined
    into a gloo group (the results gathered are a few numbers per prompt) with sharding on."""
    env = os.environ if env is None else env
    size = int(env.get("WORLD_SIZE") or 1)
    if size <= 1:
        yield World()
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        try:
            dist.init_process_group("gloo")
        except ValueError as exc:
            raise UserError(
                f"WORLD_SIZE={size} says this is one of several processes, but they cannot be "
                f"joined ({exc}). Start data-parallel evaluation with a launcher that sets RANK, "
                "MASTER_ADDR and MASTER_PORT, e.g. `torchrun --nproc_per_node=2 evaluate.py ...`, "
                "or unset WORLD_SIZE to run in one process."
            ) from exc
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    world = World(dist.get_rank(), dist.get_world_size(), group)
    log.info("data-parallel scoring: rank %d of %d", world.rank, world.size)
    token = _world.set(world)
    try:
        yield world
    finally:
        _world.reset(token)
        if created:
            dist.destroy_process_group()
