"""The seed ranges: which seeds make demonstrations and which evaluate, so that evaluation is
always on held-out episodes.

- Demonstrations: episode ``i`` of a task is collected with seed ``seed + i`` (``collect``'s
  ``seed``, 0 by default), always below :data:`EVAL_SEED_START`; collection refuses more.
- Evaluation: episode ``i`` of every task runs with seed ``seed_start + i``, ``seed_start`` at or
  above :data:`EVAL_SEED_START` by default; the same seeds for every method and training seed
  make their results paired.
"""

EVAL_SEED_START = 1_000_000
"""Evaluation seeds start here; collection refuses to use them."""
