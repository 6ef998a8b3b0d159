"""Command-line text to values: sizes (N, HxW), coordinate ranges (lo,hi), item and seed lists (0-15,3,7), Adam's
betas (0.9,0.999).
Called by the CLI only; everything below it takes parsed values."""

from __future__ import annotations

from inrkit.core.errors import InrkitError

Range = tuple[float, float]


def parse_size(text: str, ndim: int = 2) -> tuple[int, ...]:
    """'256' -> (256, 256); '128x256' -> (128, 256) (H x W); for video 'TxHxW'."""
    try:
        parts = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise InrkitError(f"--size {text!r} is not a size; write it as N or HxW, e.g. 256 or 128x256.") from None
    if len(parts) == 1:
        parts = parts * ndim
    if any(p <= 0 for p in parts):
        raise InrkitError(f"--size {text!r} must be positive.")
    return parts


def parse_betas(flag: str, value) -> tuple[float, float]:
    """'0.9,0.999' (the command line) or [0.9, 0.999] (a recipe) -> (0.9, 0.999), each in [0, 1)."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else ()
    try:
        betas = tuple(float(v) for v in items if not isinstance(v, bool))
    except (TypeError, ValueError):
        betas = ()
    if len(betas) != 2 or len(items) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise InrkitError(f"{flag} takes two numbers in [0, 1), e.g. 0.9,0.999, got {value!r}.")
    return betas


def parse_ranges(text: str, ndim: int = 2) -> list[Range]:
    """'lo,hi' (same range on every spatial axis) or 'lo_x,hi_x,lo_y,hi_y'; returns ranges in axis order."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise InrkitError(f"--grid {text!r} is not a range; write lo,hi or lo_x,hi_x,lo_y,hi_y.") from None
    if len(vals) == 2:
        pairs = [(vals[0], vals[1])] * ndim
    elif len(vals) == 4 and ndim >= 2:
        # x first on the command line (as people write it), y second; stored in axis order (y, x).
        pairs = [(vals[2], vals[3]), (vals[0], vals[1])]
        pairs = [(0.0, 1.0)] * (ndim - 2) + pairs
    else:
        raise InrkitError(f"--grid {text!r} needs 2 or 4 numbers: lo,hi or lo_x,hi_x,lo_y,hi_y.")
    for lo, hi in pairs:
        if not hi > lo:
            raise InrkitError(f"--grid {text!r} is empty: each range needs lo < hi.")
    return pairs


def parse_index(text: str) -> list[int]:
    """'0-15' -> [0, ..., 15]; '3,7,10-12' -> [3, 7, 10, 11, 12]."""
    items: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            items.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise InrkitError(f"--index {text!r} is not a list of items; write e.g. 0-15 or 3,7,10-12.") from None
    if not items:
        raise InrkitError(f"--index {text!r} selects no items.")
    return items
