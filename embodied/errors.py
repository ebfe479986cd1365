"""User errors: one clear line, exit status 2, no traceback.

Anything a user can cause (a bad file, config, task or camera name, an unwritable folder)
raises :class:`UserError`; the console scripts catch it in :func:`run_cli`. Bugs are not
caught and keep their traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


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
