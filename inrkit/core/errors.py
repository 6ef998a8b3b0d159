"""The one exception type users see: its message is a single sentence printed by the CLI."""


class InrkitError(Exception):
    """A problem with the user's input or environment, reported as one clear sentence, exit code 1."""


class Interrupted(InrkitError):
    """Ctrl-C ended a training run cleanly (after a snapshot); the CLI prints the sentence and exits 130."""

    exit_code = 130
