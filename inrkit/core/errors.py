"""The one exception type users see: its message is a single sentence printed by the CLI."""


class InrkitError(Exception):
    """A problem with the user's input or environment, reported as one clear sentence, exit code 1."""
