"""`inrkit info ARTIFACT`: a thin command over inrkit.stages.info (mounted on the app by `register`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from inrkit.stages.info import format_info, info


def info_command(
    artifact: Path = typer.Argument(..., help="An inrkit artifact (.safetensors)."),
    as_json: bool = typer.Option(False, "--json", help="Print the fields as one JSON object (for scripts)."),
) -> None:
    """Show an artifact's kind, versions, command, config, options, metrics, parents and tensor sizes."""
    d = info(artifact)  # an InrkitError is printed as one sentence by inrkit.cli.main
    typer.echo(json.dumps(d, indent=2) if as_json else format_info(d))


def register(app: typer.Typer) -> None:
    """Add `info` to `app`."""
    app.command("info")(info_command)
