"""Exponential backoff with jitter: when to try again after the n-th transient failure."""

import random


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """A delay drawn from the upper half of ``base * 2 ** (attempt - 1)``, capped at ``cap``.

    The jitter spreads the retries of many waiting items, so they do not all come back at once.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
