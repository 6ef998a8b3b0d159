"""The option checks every stage makes, written once: each failure is one sentence naming the option.

Stages call these with the option's Python name (`batch`), and the sentence spells it as the user typed it
(`--batch`), so the wording is the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from inrkit.core.errors import InrkitError


def flag(name: str) -> str:
    """'snapshot_ticks' -> '--snapshot-ticks'."""
    return "--" + name.replace("_", "-")


def require_suffix(path: str | Path, *suffixes: str, option: str = "out") -> Path:
    """`path` must end in one of `suffixes` (case-insensitive); returns it as a Path."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        ends = " or ".join(suffixes)
        raise InrkitError(f"{flag(option)} {path} should end in {ends}.")
    return path


def require_at_least(minimum: float, **values) -> None:
    """Every given option is at least `minimum` (None means not set and passes)."""
    for name, value in values.items():
        if value is not None and not value >= minimum:
            raise InrkitError(f"{flag(name)} must be at least {minimum:g}, got {value}.")


def require_positive(**values) -> None:
    """Every given option is > 0 (None means not set and passes)."""
    for name, value in values.items():
        if value is not None and not value > 0:
            raise InrkitError(f"{flag(name)} must be positive, got {value}.")


def require_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise InrkitError(f"unknown {flag(name)} {value!r}; choose {', '.join(map(str, choices))}.")
