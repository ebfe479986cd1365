"""User errors: one clear line, exit status 2, no traceback.

Anything a user can cause (a bad file, config, task or camera name, an unwritable folder)
raises :class:`UserError`; the console scripts catch it in :func:`run_cli`. Bugs are not
caught and keep their traceback.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable


class UserError(Exception):
    """An error the user can fix; its message names what is wrong and where."""


class Stopped(UserError):
    """This process stops because another process of the same run (a torchrun rank) failed or
    was interrupted, and that one reports why: exit status ``status``, and no line of its own
    unless it has a message."""

    def __init__(self, message: str = "", status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def one_line(err: BaseException, typed: bool = False, limit: int | None = None) -> str:
    """``err``'s message on one line (at most ``limit`` characters), after its type with
    ``typed``; its type alone when it has no message."""
    text = " ".join(str(err).split())[:limit]
    if not text:
        return type(err).__name__
    return f"{type(err).__name__}: {text}" if typed else text


def did_you_mean(
    name: str, known: Iterable[str], listing: str = "known", otherwise: str | None = None
) -> str:
    """What a message says after an unknown ``name``: the names of ``known`` close to it (a typo:
    ``did you mean 'drawer-open-v3'?``, by difflib's ratio), else ``otherwise``, by default all of
    them (``<listing>: a, b, ...``)."""
    known = list(known)
    close = close_names(name, known)
    if close:
        return f"did you mean {' or '.join(map(repr, close))}?"
    return otherwise if otherwise is not None else f"{listing}: {', '.join(known) or 'none'}"


def close_names(name: str, known: Iterable[str]) -> list[str]:
    """The names of ``known`` that ``name`` is likely a typo of: those as close as the closest
    (difflib's ratio at least 0.6, within 0.05 of the best; at most 3), closest first."""
    scored = [(difflib.SequenceMatcher(None, name, k).ratio(), k) for k in known]
    best = max((r for r, _ in scored), default=0.0)
    close = [(r, k) for r, k in scored if r >= 0.6 and r >= best - 0.05]
    return [k for _, k in sorted(close, key=lambda rk: -rk[0])][:3]


def run_cli(main: Callable[[], int | None]) -> int:
    """Run a command's main function, turning user errors into one line and exit status 2."""
    try:
        return int(main() or 0)
    except Stopped as err:
        if str(err):
            print(f"error: {err}", file=sys.stderr)
        return err.status
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
