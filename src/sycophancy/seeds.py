"""Per-example seeded randomness: a draw depends on data_seed and the example id, never on row order."""

from __future__ import annotations

import random


def example_rng(data_seed: int, example_id: str, salt: str = "") -> random.Random:
    """A generator seeded by data_seed and the example id, so a probe never depends on row order."""
    return random.Random(f"{data_seed}/{example_id}/{salt}")
