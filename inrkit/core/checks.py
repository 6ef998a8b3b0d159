"""The option checks every stage makes, written once: each failure is one sentence naming the option.

Stages call these with the option's Python name (`batch`), and the sentence spells it as the user typed it
(`--batch`), so the wording is the same everywhere.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
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


def require_writable(path: str | Path, *suffixes: str, option: str = "out", folder: bool = False) -> Path:
    """Before any work: `path` can be written (its folder exists or can be made, and a file can be created in it),
    it is not a folder where a file is expected (`folder=True`: a folder of outputs is expected), and it ends in
    one of `suffixes` (when given). Nothing is left behind: the probe file is removed and no folder is made."""
    path = Path(path)
    if suffixes:
        require_suffix(path, *suffixes, option=option)
    try:
        _probe(path, option, folder)
    except OSError as err:  # e.g. a folder on the way that this user may not even look into
        raise InrkitError(f"{flag(option)} {path} cannot be written ({err.strerror}).") from None
    return path


def _probe(path: Path, option: str, folder: bool) -> None:
    if not folder and path.is_dir():
        raise InrkitError(f"{flag(option)} {path} is a folder; give a file name.")
    if folder and path.exists() and not path.is_dir():
        raise InrkitError(f"{flag(option)} {path} is a file; give a folder.")
    base = path if folder else path.parent
    existing = next(p for p in (base, *base.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise InrkitError(f"{flag(option)} {path} cannot be written: {existing} is a file, not a folder.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".inrkit-probe-", dir=existing)
    except OSError as err:
        raise InrkitError(f"{flag(option)} {path} cannot be written: no file can be made in {existing} "
                          f"({err.strerror}).") from None
    os.close(fd)
    os.unlink(probe)


# ---- configs read from files: every value of the type and in the range its builder accepts, before any tensor
# is allocated (a crafted config must not be able to ask for terabytes or crash a constructor).


@dataclass(frozen=True)
class Value:
    """What one config value may be: `kind` int, float (an int too; finite), bool, str or list; numbers within
    [lo, hi], strings and lists at most `hi` long (lists at least `lo`), each list item by `items`; or one of
    `choices`. `optional`: it may be missing or null."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    items: Value | None = None
    optional: bool = False


def fits(rule: Value, v) -> bool:
    """Whether value `v` follows `rule`."""
    if rule.choices:
        return isinstance(v, (str, int, float)) and not isinstance(v, bool) and v in rule.choices
    if rule.kind is bool:
        return isinstance(v, bool)
    if rule.kind is str:
        return isinstance(v, str) and len(v) <= (rule.hi or 4096)
    if rule.kind is list:
        return (isinstance(v, list) and (rule.lo or 0) <= len(v) <= (rule.hi or 4096)
                and (rule.items is None or all(fits(rule.items, x) for x in v)))
    number = isinstance(v, (int, float)) and not isinstance(v, bool) and (rule.kind is float or isinstance(v, int))
    finite = number and (isinstance(v, int) or math.isfinite(v))  # math.isfinite(10**400) would overflow
    return finite and (rule.lo is None or v >= rule.lo) and (rule.hi is None or v <= rule.hi)


def _expected(rule: Value) -> str:
    """'an integer from 1 to 4096', 'one of nearest, linear', ... for the error sentence."""
    if rule.choices:
        return "one of " + ", ".join(map(str, rule.choices))
    if rule.kind is list:
        return f"a list of {rule.lo or 0} to {rule.hi or 4096} items, each {_expected(rule.items)}" if rule.items \
            else "a list"
    name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[rule.kind]
    if rule.kind in (int, float) and rule.lo is not None and rule.hi is not None:
        return f"{name} from {rule.lo:g} to {rule.hi:g}"
    return name


def check_config(config, rules: dict[str, Value], where: str | Path, name: str = "config",
                 extra: bool = False) -> dict:
    """`config` (read from `where`) is a JSON object whose values follow `rules`; a key without a rule is refused
    unless `extra`. Returns the config; the sentence names the file, the key, the value and what was expected."""
    if not isinstance(config, dict):
        raise InrkitError(f"{where} has a {name} that is not a JSON object; the file is damaged or foreign.")
    unknown = [k for k in config if k not in rules]
    if unknown and not extra:
        raise InrkitError(f"{where} has a {name} with an unknown key {unknown[0][:40]!r}; the file is damaged or "
                          "foreign.")
    for key, rule in rules.items():
        value = config.get(key)
        if value is None and rule.optional:
            continue
        if key not in config:
            raise InrkitError(f"{where} has a {name} without {key}; the file is damaged or foreign.")
        if not fits(rule, value):
            shown = _shown(value)
            raise InrkitError(f"{where} has a {name} whose {key} is {shown}, not {_expected(rule)}; the file is "
                              "damaged or foreign.")
    return config


def _shown(value) -> str:
    """A value as the file has it, cut short (a damaged file may hold anything, nested 10,000 deep)."""
    try:
        text = json.dumps(value)
    except (RecursionError, ValueError):
        return "a nested value"
    return text if len(text) <= 40 else text[:37] + "..."
