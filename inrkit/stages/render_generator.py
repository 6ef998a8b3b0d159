"""`inrkit render` for generator artifacts (INR-GAN, Sec. 4 of the paper): sample grids at any resolution
(superresolution, zoom-out, accelerated low-resolution inference), interpolation of INR parameters or
pixels between two seeds (Fig. 5), and the per-block Fourier frequency histogram (App. Fig. 16).

Seed k is sample k of `inrkit fid` (its own random stream, `sample_latents`), and every seed is mapped and
rendered on its own, so an image depends on its seed only, never on the other seeds drawn with it."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_png
from inrkit.core.runtime import pick_device, print0
from inrkit.fields.grid import Range

DEFAULT_SEEDS = 16  # seeds drawn when none are given
SEED_BASE = 0  # the base seed of sample_latents (as `inrkit fid --seed 0`)
SPACES = ("inr", "pixel")


def _check_options(seeds, psi, interpolate, steps, space, columns) -> None:
    if seeds is not None and not seeds:
        raise InrkitError("--seeds selects no seeds; write e.g. 0-15 or 3,7,10-12.")
    if seeds is not None and min(seeds) < 0:
        raise InrkitError(f"--seeds must be non-negative, got {min(seeds)}.")
    if not math.isfinite(psi):
        raise InrkitError(f"--psi must be a finite number, got {psi}.")
    if interpolate is not None and len(interpolate) != 2:
        raise InrkitError(f"--interpolate needs exactly two seeds A,B, got {len(interpolate)}.")
    if interpolate is not None and min(interpolate) < 0:
        raise InrkitError(f"--interpolate seeds must be non-negative, got {min(interpolate)}.")
    if steps < 2:
        raise InrkitError(f"--steps must be at least 2 (the two ends), got {steps}.")
    if space not in SPACES:
        raise InrkitError(f"unknown --space {space!r}; choose inr or pixel.")
    if columns < 1:
        raise InrkitError(f"columns must be at least 1, got {columns}.")


def _load(artifact: Path, device: torch.device):
    from inrkit.stages.fid import load_generator

    art = artifacts.read(artifact, kind="generator")
    if not isinstance(art.config.get("generator"), dict):
        raise InrkitError(f"{artifact} is a generator artifact without its generator config; the file is "
                          "damaged or foreign.")
    return load_generator(artifact, device)


@torch.no_grad()
def seed_params(G, seeds: list[int], psi: float) -> list[dict[str, torch.Tensor]]:
    """theta of each seed, each mapped alone (batch 1): the same numbers whatever else is drawn."""
    from inrkit.stages.fid import sample_latents

    device = G.w_avg.device
    return [G.inr_params(G.mapping(sample_latents(G.config["z_dim"], s, 1, SEED_BASE).to(device), psi=psi,
                                   update_w_avg=False)) for s in seeds]


@torch.no_grad()
def render_params(G, thetas: list[dict], shape: tuple[int, int], ranges: list[Range] | None,
                  chunk: int | None) -> torch.Tensor:
    """Each theta rendered alone -> (n, H, W, C) in [0, 1] (raw [-1, 1] mapped and clamped)."""
    images = [G.render(t, resolution=shape, ranges=ranges, chunk=chunk) for t in thetas]
    return ((torch.cat(images) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


def render_generator(
    artifact: Path,                    # a generator artifact written by `inrkit train-gan`
    out: Path,                         # .png: the sample grid, the interpolation row or the histogram
    *,
    seeds: list[int] | None = None,    # samples to draw (default 0-15); sample k as in `inrkit fid`
    psi: float = 1.0,                  # truncation (App. B.3): w_avg + psi (w - w_avg)
    size: tuple[int, ...] | None = None,   # output (H, W) per image; below training size: low-res inference
    scale: float | None = None,        # grid density relative to training (2 = superresolution)
    grid: list[Range] | None = None,   # coordinate ranges (y, x); training range is [0, 1] (wider: zoom-out)
    interpolate: tuple[int, int] | list[int] | None = None,  # two seeds: a row from the first to the second
    steps: int = 8,                    # images in the interpolation row, ends included
    space: str = "inr",                # interpolate INR parameters theta (Fig. 5) or pixels
    frequencies: bool = False,         # write the per-block Fourier frequency histogram (Fig. 16) instead
    columns: int = 8,                  # images per row of the sample grid
    chunk: int | None = None,          # pixels per block evaluation chunk (None: whole grids)
    device: str = "auto",
) -> Path:
    """Draw a generator's samples, an interpolation row or its frequency histogram; return the PNG path."""
    from inrkit.stages.render import output_shape
    from inrkit.stages.render_functa import tile

    out = Path(out)
    _check_options(seeds, psi, interpolate, steps, space, columns)
    if out.suffix.lower() != ".png":
        raise InrkitError(f"--out {out} should end in .png for a generator.")
    seeds = list(range(DEFAULT_SEEDS)) if seeds is None else list(seeds)
    dev = pick_device(device)
    G = _load(Path(artifact), dev)
    base = _training_shape(G)
    shape = output_shape(base, size, scale, grid)
    if frequencies:
        return _frequency_histogram(G, seeds, psi, out)
    start = time.perf_counter()
    if interpolate is not None:
        a, b = seed_params(G, list(interpolate), psi)
        ts = [i / (steps - 1) for i in range(steps)]
        if space == "inr":  # theta = alpha theta_a + (1 - alpha) theta_b, alpha from 1 to 0
            frames = render_params(G, [_lerp(a, b, 1.0 - t) for t in ts], shape, grid, chunk)
        else:
            ends = render_params(G, [a, b], shape, grid, chunk)
            frames = torch.stack([(1.0 - t) * ends[0] + t * ends[1] for t in ts])
        save_png(out, tile(frames, steps))
        print0(f"rendered {steps} images from seed {interpolate[0]} to {interpolate[1]} ({space} space) at "
               f"{shape[0]}x{shape[1]} in {time.perf_counter() - start:.2f} s -> {out}")
        return out
    thetas = seed_params(G, seeds, psi)
    images = render_params(G, thetas, shape, grid, chunk)
    seconds = time.perf_counter() - start
    save_png(out, tile(images, columns))
    print0(f"rendered {len(seeds)} samples at {shape[0]}x{shape[1]} in {seconds:.2f} s -> {out}")
    if size is not None and grid is None and shape[0] * shape[1] < base[0] * base[1]:
        _report_low_res(G, thetas, shape, base, chunk)
    return out


def _training_shape(G) -> tuple[int, int]:
    r = G.config["resolution"]
    return (r, r)


def _lerp(theta1: dict, theta2: dict, alpha: float) -> dict:
    from inrkit.models.inrgan import lerp_params

    return lerp_params(theta1, theta2, alpha)


def _report_low_res(G, thetas, shape, base, chunk) -> None:
    """Accelerated low-resolution inference: every block runs on its correspondingly sparser grid. Print
    the MACs per image at this size against the training size, and both measured render times."""
    from inrkit.models.inrgan import count_macs

    low, full = G.macs_per_image(tuple(shape)), G.macs_per_image(tuple(base))
    per_pixel = [sum(count_macs(G.config, tuple(s))[k] for k in ("inr", "fourier")) for s in (shape, base)]
    timings = []
    for s in (shape, base):  # best of 3 after a warm-up, the same seeds at both sizes
        render_params(G, thetas[:1], s, None, chunk)
        timings.append(min(_timed(render_params, G, thetas, s, None, chunk) for _ in range(3)))
    print0(f"low-res inference: {low / 1e6:.3f} MMACs per image at {shape[0]}x{shape[1]} vs {full / 1e6:.3f} "
           f"MMACs at {base[0]}x{base[1]} ({full / max(low, 1):.2f}x fewer; the per-pixel INR part "
           f"{per_pixel[1] / max(per_pixel[0], 1):.2f}x fewer); measured {timings[0]:.4f} s vs {timings[1]:.4f} s "
           f"({timings[1] / max(timings[0], 1e-9):.2f}x faster) for {len(thetas)} images")


def _timed(fn, *args) -> float:
    begin = time.perf_counter()
    fn(*args)
    return time.perf_counter() - begin


@torch.no_grad()
def _frequency_histogram(G, seeds: list[int], psi: float, out: Path) -> Path:
    """App. Fig. 16: the distribution of |W_i| (radians per unit of [0, 1]) per block over the seeds."""
    if not G.config.get("fourier", True):
        raise InrkitError("this generator has no Fourier features (fourier=False); there are no frequencies "
                          "to plot.")
    per_block = [torch.cat(f) for f in zip(*(G.fourier_frequencies(t) for t in seed_params(G, seeds, psi)),
                                           strict=True)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = G.config["blocks"]
    fig, axes = plt.subplots(1, len(per_block), figsize=(3.2 * len(per_block), 2.8), dpi=120, squeeze=False)
    for k, (ax, values) in enumerate(zip(axes[0], per_block, strict=True)):
        v = values.flatten().float().cpu().numpy()
        ax.hist(v, bins=min(50, max(5, v.size // 4)), color=f"C{k}")
        ax.set_title(f"block {k} ({blocks[k][0]}px)")
        ax.set_xlabel("frequency |w| (rad / unit)")
        ax.set_ylabel("count" if k == 0 else "")
    fig.suptitle(f"Fourier feature frequencies over {len(seeds)} seeds")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    artifacts.atomic_write_bytes(out, buf.getvalue())
    print0(f"frequency histogram of {len(per_block)} blocks over {len(seeds)} seeds -> {out}")
    return out
