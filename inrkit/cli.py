"""The `inrkit` command line: one command per stage; each parses options and calls one stage function."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from inrkit.errors import InrkitError

app = typer.Typer(
    help="Implicit neural representations: fit, meta-learn, GANs, diffusion, and rendering on any grid.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    if debug:
        os.environ["INRKIT_DEBUG"] = "1"


@app.command()
def fit(
    signal: str = typer.Argument(..., help="Image file, folder of frames, animated GIF, or builtin:NAME."),
    out: Path = typer.Option(Path("out/field.safetensors"), help="Field artifact to write."),
    arch: str = typer.Option("loe", help="siren | pe | loe"),
    width: int = typer.Option(64, help="Hidden channels."),
    depth: int = typer.Option(10, help="Linear layers in all."),
    tile: int = typer.Option(2, help="LoE: candidate weights per axis (N; N^d per layer)."),
    blend: str = typer.Option("nearest", help="LoE blending: nearest | linear."),
    arrangement: str = typer.Option("coarse-to-fine", help="LoE grid layout: coarse-to-fine | fine-to-coarse | "
                                    "interleaved | chunked | random-affine."),
    frequencies: int = typer.Option(8, help="Positional-encoding frequencies L (LoE: 0 = constant input)."),
    w0: float = typer.Option(30.0, help="SIREN w0 (first and hidden layers)."),
    steps: int = typer.Option(2000, help="Optimisation steps."),
    lr: float | None = typer.Option(None, help="Learning rate (default 5e-3 for pe/loe, 1e-4 for siren)."),
    lr_decay: float = typer.Option(0.1, help="Multiply the learning rate by this ..."),
    lr_decay_at: float = typer.Option(0.5, help="... after this fraction of the steps."),
    batch_pixels: int = typer.Option(0, help="Random pixels per step; 0 = the full grid every step."),
    size: str | None = typer.Option(None, help="Resample the target to N or HxW."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Fit one signal. Example: inrkit fit builtin:camera --arch loe --size 256 --out out/camera.safetensors"""
    from inrkit.fields.grid import parse_size
    from inrkit.stages.fit import fit as run

    run(signal, out, arch=arch, width=width, depth=depth, tile=tile, blend=blend, arrangement=arrangement,
        frequencies=frequencies, w0=w0, steps=steps, lr=lr, lr_decay=lr_decay, lr_decay_at=lr_decay_at,
        batch_pixels=batch_pixels, size=parse_size(size) if size else None, seed=seed, device=device)


@app.command()
def render(
    artifact: Path = typer.Argument(..., help="An artifact written by fit."),
    out: Path = typer.Option(Path("out/render.png"), help="Output .png (video: .gif or a folder of frames)."),
    size: str | None = typer.Option(None, help="Output size N or HxW (any resolution)."),
    scale: float | None = typer.Option(None, help="Grid density relative to training: 2 = superresolution."),
    grid: str | None = typer.Option(None, help="Coordinate range lo,hi or lo_x,hi_x,lo_y,hi_y; training "
                                       "range is 0,1 (e.g. --grid=-0.3,1.3 zooms out)."),
    chunk: int = typer.Option(2**16, help="Points per evaluation chunk (bounds memory)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Render an INR on any grid. Example: inrkit render out/camera.safetensors --scale 2 --out x2.png"""
    from inrkit.fields.grid import parse_ranges, parse_size
    from inrkit.stages.render import render as run

    if chunk < 1:
        raise InrkitError("--chunk must be at least 1.")
    run(artifact, out, size=parse_size(size) if size else None, scale=scale,
        grid=parse_ranges(grid) if grid else None, chunk=chunk, device=device)


def _mount_subcommands() -> None:
    from inrkit.cli_data import data_app

    app.add_typer(data_app, name="data", help="Look at datasets and pack them into webdataset shards.")


_mount_subcommands()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1 (--debug shows the traceback)."""
    try:
        app()
    except InrkitError as e:
        if os.environ.get("INRKIT_DEBUG") or "--debug" in sys.argv:
            raise
        print(f"inrkit: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("inrkit: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
