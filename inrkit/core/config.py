"""One config per stage: a dataclass whose fields are the stage's options, written once.

Each field carries its default, its help text and two marks: `resume` (the option changes what is learned, so a
resumed run must match it) and `cli` (False: Python only, e.g. `progress`). The command line declares its options
from these fields (inrkit.cli.declare), a recipe (a JSON file in recipes/) fills the options the command line did
not give, and the artifact's `options` metadata is `options_of(cfg)`. Nothing here knows the CLI library.

    @dataclass
    class MetaConfig:
        data: str = option(help="Training images.", resume=True)
        width: int = option(256, "SIREN width.", resume=True)   # Tab. 4: 256
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from inrkit.core.checks import flag
from inrkit.core.errors import InrkitError

RECIPE_KEYS = ("description", "usage", "source", "paper", "options", "variants")


def option(default: Any = dataclasses.MISSING, help: str = "", *, resume: bool = False, cli: bool = True,
           metavar: str | None = None) -> Any:
    """A config field; no default means the option is required (e.g. --data)."""
    metadata = dict(help=help, resume=resume, cli=cli, metavar=metavar)
    if isinstance(default, (list, dict, set)):  # dataclasses refuse a shared mutable default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def stage_name(cls) -> str:
    """'TrainGanConfig' -> 'train-gan': the command the config belongs to, for messages."""
    words = re.findall(r"[A-Z][a-z0-9]*", cls.__name__.removesuffix("Config"))
    return "-".join(w.lower() for w in words)


def default_of(field: dataclasses.Field):
    """A field's default (a fresh copy of a mutable one), or dataclasses.MISSING for a required option."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def defaults(cls) -> dict:
    """The fields that have a default, with it (required fields are left out)."""
    values = {f.name: default_of(f) for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if v is not dataclasses.MISSING}


def resume_keys(cls) -> tuple[str, ...]:
    """The options a resumed run must match, in field order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resume"))


def build(cls, **values):
    """`cls(**values)`, refusing an unknown or missing option in one sentence instead of a TypeError."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise InrkitError(f"{stage_name(cls)} has no option {unknown[0]!r}.")
    missing = [k for k in names if k not in values and k not in defaults(cls)]
    if missing:
        raise InrkitError(f"{stage_name(cls)} needs the option {missing[0]!r}.")
    return cls(**values)


def options_of(cfg) -> dict:
    """The config as JSON-able values (paths as text, tuples as lists), for the artifact's `options`."""
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def resume_options(cfg) -> dict:
    """The options a resumed run must match (`resume_keys`), as written into its training state."""
    keys = set(resume_keys(type(cfg)))
    return {k: v for k, v in options_of(cfg).items() if k in keys}


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def load_recipe(text: str | Path, cls) -> dict:
    """The options a recipe sets: 'FILE' gives its `options`, 'FILE#VARIANT' applies `variants[VARIANT]` over
    them. Unknown top-level keys, variants and options are refused by name."""
    path, _, variant = str(text).partition("#")
    recipe = _read_recipe(path)
    options = dict(recipe.get("options", {}))
    if variant:
        variants = recipe.get("variants", {})
        if variant not in variants:
            raise InrkitError(f"recipe {path} has no variant {variant!r}; it has {', '.join(variants) or 'none'}.")
        options.update(variants[variant])
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise InrkitError(f"recipe {path} sets unknown option {unknown[0]!r} for {stage_name(cls)}.")
    return options


def _read_recipe(path: str) -> dict:
    """The recipe's JSON object, its shape checked (what a hand-edited file most often gets wrong)."""
    try:
        recipe = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InrkitError(f"recipe {path} does not exist.") from None
    except IsADirectoryError:
        raise InrkitError(f"recipe {path} is a folder, not a JSON file.") from None
    except ValueError:
        raise InrkitError(f"recipe {path} is not valid JSON.") from None
    if not isinstance(recipe, dict):
        raise InrkitError(f"recipe {path} should hold a JSON object with 'options' (and maybe 'variants').")
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise InrkitError(f"recipe {path} has unknown key {unknown[0]!r}; it may hold {', '.join(RECIPE_KEYS)}.")
    variants = recipe.get("variants", {})
    if not isinstance(recipe.get("options", {}), dict) or not isinstance(variants, dict) or not all(
            isinstance(v, dict) for v in variants.values()):
        raise InrkitError(f"recipe {path}: 'options' and every variant should be JSON objects of option values.")
    return recipe


def resolve(cls, given: dict, recipe: str | Path | None = None) -> dict:
    """The stage's keyword arguments: dataclass defaults < recipe < `given` (only the options the user typed).
    A required option neither given nor set by the recipe is refused by its flag (e.g. --data)."""
    values = defaults(cls)
    if recipe:
        values.update(load_recipe(recipe, cls))
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise InrkitError(f"{stage_name(cls)} has no option {unknown[0]!r}.")
    values.update(given)
    for f in dataclasses.fields(cls):
        if values.get(f.name) is None and f.name not in defaults(cls):  # a required option has no default
            raise InrkitError(f"{flag(f.name)} is needed (neither given nor set by the recipe).")
    return {f.name: values[f.name] for f in dataclasses.fields(cls)}
