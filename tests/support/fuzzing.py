"""Seeded random and mutated inputs for the decoder fuzz tests (tests/test_fuzz_*.py).

The seed is fixed so every CI run tries the same inputs and a failure reproduces; set
``EDGE_FUZZ_SEED`` to try others locally (the seed is in every assertion message).
Cases are counted, not timed, so a slow machine runs the same cases, only slower.
"""

from __future__ import annotations

import os
import random
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

SEED = int(os.environ.get("EDGE_FUZZ_SEED", "20261203"))
_INTERESTING = (b"\x00", b"\xff", b"\x02", b"\x03", b"\r", b"\n", b"\r\n", b",", b"*",
                b"-", b"+", b".", b"e", b"E", b"9" * 40, b"1e999", b"nan", b"inf",
                b"0000-00-00", b"0001-01-01,00:00:00", b"9999-12-31,23:59:59")


def rng(name: str) -> random.Random:
    """A generator for one test, from the run's seed and the test's name."""
    return random.Random(f"{SEED}:{name}")


def mutate(rand: random.Random, data: bytes) -> bytes:
    """``data`` with one to four random edits: flipped bits, bytes replaced, inserted or
    deleted, a slice repeated or cut, an interesting token spliced in."""
    out = bytearray(data)
    for _ in range(rand.randint(1, 4)):
        op = rand.randrange(7)
        at = rand.randrange(len(out) + 1)
        if op == 0 and out:
            at = min(at, len(out) - 1)
            out[at] ^= 1 << rand.randrange(8)
        elif op == 1 and out:
            out[min(at, len(out) - 1)] = rand.randrange(256)
        elif op == 2:
            out[at:at] = bytes(rand.randrange(256) for _ in range(rand.randint(1, 8)))
        elif op == 3:
            del out[at:at + rand.randint(1, 8)]
        elif op == 4:
            piece = out[at:at + rand.randint(1, 16)]
            out[at:at] = piece * rand.randint(1, 50)
        elif op == 5:
            del out[at:]
        else:
            out[at:at] = rand.choice(_INTERESTING)
    return bytes(out)


def noise(rand: random.Random, longest: int) -> bytes:
    """Random bytes, sometimes printable, of random length up to ``longest``."""
    size = rand.randint(0, longest)
    if rand.random() < 0.5:
        return bytes(rand.randrange(256) for _ in range(size))
    return bytes(rand.choice(b"0123456789,.+-eE AMD:\r\n\x02\x03") for _ in range(size))


def split(rand: random.Random, data: bytes) -> list[bytes]:
    """``data`` cut at random places (as a port delivers it)."""
    cuts = sorted(rand.sample(range(1, len(data)), min(len(data) - 1, rand.randint(0, 6)))) \
        if len(data) > 1 else []
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Measures the peak of memory allocated by Python inside the block (tracemalloc);
    the list yielded holds it, in bytes, when the block ends."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
