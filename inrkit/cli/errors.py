"""The one place a user error is printed: one line on stderr and exit code 1, for every command and sub-app."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from inrkit.core.errors import InrkitError, Interrupted


def debugging() -> bool:
    """--debug (or INRKIT_DEBUG=1): show the traceback instead of the sentence."""
    return bool(os.environ.get("INRKIT_DEBUG")) or "--debug" in sys.argv


@contextmanager
def user_errors() -> Iterator[None]:
    """An InrkitError becomes 'inrkit: error: SENTENCE' on stderr and exit code 1 (an Interrupted run: 'inrkit:
    SENTENCE', 130). It raises SystemExit, which click lets through, so it works around the whole app
    (inrkit.cli.main) and inside one command of a sub-app invoked on its own (typer's CliRunner) alike."""
    try:
        yield
    except InrkitError as err:
        if debugging():
            raise
        label = "" if isinstance(err, Interrupted) else "error: "
        print(f"inrkit: {label}{' '.join(str(err).splitlines())}", file=sys.stderr)  # one line, whatever a file held
        raise SystemExit(getattr(err, "exit_code", 1)) from None
