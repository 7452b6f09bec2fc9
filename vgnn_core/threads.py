"""Independent per-crystal CPU work (eigen-solves, DOS, thermal properties) over threads.

After the network, each crystal's band structure and mesh are separate calculations whose time
is LAPACK's Hermitian eigen-solves, which release the GIL. Running them in threads, each
limited to one intra-op thread, uses the cores without oversubscribing them (one crystal per
thread rather than one eigen-solve spread thinly over all cores).

Every item runs with one torch thread whatever ``threads`` is, so the results are bitwise the
same for any thread count (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_threads(fn: Callable[[Item], Result], items: Sequence[Item], threads: int) -> list[Result]:
    """``[fn(x) for x in items]`` in up to ``threads`` threads, in order.

    The first exception raised by an item is re-raised once all items have finished. The
    calling thread's torch thread count is restored on return.
    """
    items = list(items)
    caller_threads = torch.get_num_threads()
    try:
        if threads <= 1 or len(items) <= 1:
            torch.set_num_threads(1)
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(threads, len(items)), initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return list(pool.map(fn, items))
    finally:
        # torch.set_num_threads also sets MKL's process-wide count, which the pool threads lowered
        torch.set_num_threads(caller_threads)
