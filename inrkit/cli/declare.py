"""Typer commands declared from a stage's config dataclass (inrkit.core.config), so a training stage's options,
defaults and help are written once, in inrkit/stages/configs.py.

Typer reads a command's options from its signature; `command` builds that signature from the dataclass fields
(one option per field with cli=True, booleans as --x/--no-x) plus `--config FILE[#VARIANT]`. An option keeps the
dataclass default, so `--help` shows it, and click tells which options the user actually typed: only those win
over the recipe (dataclass defaults < recipe < command line).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable

import typer

from inrkit.core.checks import flag
from inrkit.core.config import default_of, resolve, stage_name

CONFIG_HELP = ("A JSON recipe (recipes/*.json), FILE#VARIANT for one of its variants; it sets the options not "
               "given on the command line.")


def command(cls, run: Callable[[dict], object], *, doc: str, arguments: tuple[str, ...] = (),
            flags: dict[str, str] | None = None) -> Callable:
    """A typer callback for `cls`: it resolves the options and calls `run(kwargs)`. `arguments` are fields
    taken positionally; `flags` spells a field's flag other than --name (e.g. '--first-order/--second-order')."""
    hints = typing.get_type_hints(cls)
    params = [_parameter(f, hints[f.name], f.name in arguments, (flags or {}).get(f.name))
              for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                                    default=typer.Option(None, "--config", help=CONFIG_HELP,
                                                         metavar="FILE[#VARIANT]")))
    params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def callback(ctx: typer.Context, config: str | None, **values) -> None:
        run(resolve(cls, {k: v for k, v in values.items() if _typed(ctx, k)}, config))

    callback.__signature__ = inspect.Signature(params)
    callback.__doc__ = doc
    callback.__name__ = stage_name(cls).replace("-", "_")
    return callback


def _typed(ctx: typer.Context, name: str) -> bool:
    """The user gave this option (on the command line; click's source is DEFAULT when it filled the default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _parameter(field: dataclasses.Field, hint, positional: bool, spelling: str | None) -> inspect.Parameter:
    """One typer Argument or Option for a config field, with the field's help, default and metavar."""
    help, metavar = field.metadata.get("help", ""), field.metadata.get("metavar")
    default = default_of(field)
    required = default is dataclasses.MISSING
    if positional:
        info = typer.Argument(... if required else default, help=help, metavar=metavar, show_default=not required)
    else:
        name = spelling or (f"{flag(field.name)}/--no-{field.name.replace('_', '-')}" if hint is bool
                            else flag(field.name))
        # A required option is not required by typer: the recipe may set it, and resolve() names it if not.
        info = typer.Option(None if required else default, name, help=help, metavar=metavar,
                            show_default=not required)
    annotation = hint | None if required and not positional else hint
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)
