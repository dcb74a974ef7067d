"""The world's draws: reasoning-gym seeds for the task data's sources and the pocket corpus, so that a
recipe's seed draws a world of its own."""

from __future__ import annotations

# reasoning-gym draws item j of a dataset seeded s from Random(s + j): seeds s and s + 1 share all but
# one item. Every (world seed, stream) pair gets a block of a million seeds of its own, so no two
# draws share an item (no dataset here has a million items).
SEED_STRIDE, STREAMS = 1_000_003, 1000


def world_seed(seed: int, stream: int = 0) -> int:
    """The reasoning-gym seed of draw `stream` (< 1000) of the world seeded `seed`: no item in common
    with another seed's draws or another stream's."""
    if not 0 <= stream < STREAMS:
        raise ValueError(f"stream {stream}: expected 0 <= stream < {STREAMS}")
    return (seed * STREAMS + stream) * SEED_STRIDE
