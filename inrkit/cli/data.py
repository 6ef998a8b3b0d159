"""`inrkit data pack|show`: thin commands over inrkit.data (parse options, call one function, print)."""

from __future__ import annotations

from pathlib import Path

import typer

from inrkit.cli.errors import user_errors
from inrkit.core.errors import InrkitError
from inrkit.data import DATA_HELP, pack_dataset, show_dataset

data_app = typer.Typer(
    help="Look at image datasets and pack them into webdataset shards.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)


@data_app.command("pack")
def pack_command(
    src: str = typer.Argument(..., help=DATA_HELP, show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the shards and dataset.json."),
    resolution: int = typer.Option(..., "--resolution", "-r", help="Side of the square images stored."),
    channels: int = typer.Option(3, help="1 (grey) or 3 (RGB)."),
    labels: bool = typer.Option(False, "--labels", help="Store class labels as {key}.cls."),
    shard_size: int = typer.Option(1000, help="Images per shard."),
    image_format: str = typer.Option("png", "--format", help="png (lossless), jpg or webp."),
    quality: int = typer.Option(95, help="jpg/webp quality, 1-100."),
    split: str = typer.Option("train", help="train or heldout (built-in sets); also the shard name prefix."),
    count: int = typer.Option(None, help="Pack only the first COUNT images (builtin:photos: make COUNT crops)."),
    seed: int = typer.Option(0, help="Crop positions of builtin:photos."),
    workers: int = typer.Option(2, help="Decoding processes (0: decode in this process)."),
) -> None:
    """Pack images into webdataset shards at one resolution; packing twice gives identical shards.

    Example: inrkit data pack photos/ --out shards/ --resolution 64 --labels
    """
    with user_errors():
        summary = pack_dataset(src, out, resolution, channels, labels=labels, shard_size=shard_size,
                               image_format=image_format, quality=quality, split=split, count=count,
                               seed=seed, workers=workers)
    typer.echo("\n".join(summary.lines()))


@data_app.command("show")
def show_command(
    data: str = typer.Argument(..., help=DATA_HELP, show_default=False),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="Where the PNG grid goes."),
    num: int = typer.Option(64, "--num", "-n", help="How many of the first images the grid shows."),
    columns: int = typer.Option(8, help="Images per grid row."),
    resolution: int = typer.Option(64, "--resolution", "-r", help="Side each image is converted to."),
    channels: int = typer.Option(3, help="1 (grey) or 3 (RGB)."),
    labels: bool = typer.Option(False, "--labels", help="Read class labels and write them under each image."),
    split: str = typer.Option("train", help="train or heldout (built-in sets only)."),
    count: int = typer.Option(None, help="Use only the first COUNT images (builtin:photos: make COUNT crops)."),
    seed: int = typer.Option(0, help="Crop positions of builtin:photos."),
) -> None:
    """Write a PNG grid of the first images (with labels) and print the count, resolution and classes.

    Example: inrkit data show builtin:digits --labels --out digits.png
    """
    with user_errors():
        if num < 1 or columns < 1:
            raise InrkitError(f"--num and --columns must be at least 1, got {num} and {columns}.")
        report = show_dataset(data, out, num=num, columns=columns, resolution=resolution, channels=channels,
                              labels=labels, split=split, count=count, seed=seed)
    typer.echo("\n".join(report.lines()))
