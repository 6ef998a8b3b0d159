"""The INR-GAN family (kind `generator`, Skorokhodov et al. 2021): rebuilding a generator, its source of samples
for FID, and `inrkit render`'s pictures of it: sample grids at any resolution (superresolution, zoom-out,
accelerated low-resolution inference), interpolation of INR parameters or pixels between two seeds (Fig. 5) and
the per-block Fourier frequency histogram (App. Fig. 16).

A generator artifact holds `config["generator"]` (the keyword arguments of inrkit.models.inrgan.generator_config)
and that model's state dict: the weights to sample (EMA weights, if training keeps them) with the `w_avg` buffer
truncation uses. Seed k of `render` is sample k of `inrkit fid` (inrkit.models.sampling), and every seed is mapped
and rendered on its own, so an image depends on its seed only, never on the other seeds drawn with it.
Registered in inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import require_suffix
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, pyplot, save_figure, save_png
from inrkit.core.precision import compile_module
from inrkit.core.runtime import pick_device, print0
from inrkit.fields.grid import Range, output_shape
from inrkit.models.inrgan import InrGanGenerator, count_macs, lerp_params
from inrkit.models.sampling import Sampler, generate, render_params, render_theta, seed_params
from inrkit.models.validate import check_generator_config

KIND = "generator"
LATENTS_KIND = "latents"  # images projected into a generator's z or w (inrkit.stages.project); not rebuilt
RENDER_OPTIONS = ("seeds", "psi", "interpolate", "steps", "space", "frequencies")
DEFAULT_SEEDS = 16  # seeds drawn when none are given
SPACES = ("inr", "pixel")

render_codes = render_theta  # the render interface: theta (B) on any grid -> (B, H, W, C) in [0, 1]


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> InrGanGenerator:
    """The generator an artifact holds, in eval mode on `device`."""
    if not isinstance(art.config.get("generator"), dict):
        raise InrkitError(f"{path} is a generator artifact without its generator config; the file is damaged or "
                          "foreign.")
    check_generator_config(art.config["generator"], sum(t.numel() for t in art.tensors.values()), path)
    return artifacts.load_state(InrGanGenerator(art.config["generator"]), art, path).to(device).eval()


def sampler(G: InrGanGenerator, *, seed: int, psi: float = 1.0, estimate: bool = True) -> Sampler:
    """G's samples for FID: sample k from default_rng([seed, k]), truncated by psi (App. B.3). With estimate, a
    generator trained without tracking w_avg gets it estimated (on G itself) before the first draw, so that
    option checks made with the Sampler come first."""

    def draw(start: int, count: int, side: int | None) -> torch.Tensor:
        if psi != 1.0 and estimate and not G.w_avg.any():  # once: the estimate is not all zeros
            print0("the generator has no tracked w_avg; estimating it from 10,000 samples for truncation.")
            G.estimate_w_avg(seed=seed)
        return generate(G, start, count, seed, psi, side)

    return Sampler(G.config["resolution"], G.config["out_channels"], draw)


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


def render(art: artifacts.Artifact, path: str | Path, out: str | Path, *, size: tuple[int, ...] | None = None,
           scale: float | None = None, grid: list[Range] | None = None, chunk: int | None = None,
           device: str = "auto", seeds: list[int] | None = None, psi: float = 1.0,
           interpolate: list[int] | None = None, steps: int = 8, space: str = "inr", frequencies: bool = False,
           columns: int = 8, compile: bool = False) -> Path:
    """`inrkit render` of a generator: seeds (default 0-15) in rows of `columns`; with `interpolate` a row of
    `steps` images from the first seed to the second (in `space`); with `frequencies` the histogram instead.
    A size below the training size is low-resolution inference, reported with its MACs and times. `compile`
    compiles the generator's forward and render."""
    out = Path(out)
    _check_options(seeds, psi, interpolate, steps, space, columns)
    require_suffix(out, ".png")
    seeds = list(range(DEFAULT_SEEDS)) if seeds is None else list(seeds)
    dev = pick_device(device)
    G = compile_module(build(art, path, dev), dev, compile)
    base = (G.config["resolution"],) * 2
    shape = output_shape(base, size, scale, grid)
    if frequencies:
        return _frequency_histogram(G, seeds, psi, out)
    if interpolate is not None:
        return _interpolation(G, interpolate, psi, steps, space, shape, grid, chunk, out)
    start = time.perf_counter()
    thetas = seed_params(G, seeds, psi)
    images = render_params(G, thetas, shape, grid, chunk)
    seconds = time.perf_counter() - start
    save_png(out, image_grid(images, columns))
    print0(f"rendered {len(seeds)} samples at {shape[0]}x{shape[1]} in {seconds:.2f} s -> {out}")
    if size is not None and grid is None and shape[0] * shape[1] < base[0] * base[1]:
        _report_low_res(G, thetas, shape, base, chunk)
    return out


def _interpolation(G: InrGanGenerator, seeds: list[int], psi: float, steps: int, space: str, shape, grid,
                   chunk, out: Path) -> Path:
    """Fig. 5: a row of `steps` images from seed A to seed B, mixing INR parameters or pixels."""
    start = time.perf_counter()
    a, b = seed_params(G, list(seeds), psi)
    ts = [i / (steps - 1) for i in range(steps)]
    if space == "inr":  # theta = alpha theta_a + (1 - alpha) theta_b, alpha from 1 to 0
        frames = render_params(G, [lerp_params(a, b, 1.0 - t) for t in ts], shape, grid, chunk)
    else:
        ends = render_params(G, [a, b], shape, grid, chunk)
        frames = torch.stack([(1.0 - t) * ends[0] + t * ends[1] for t in ts])
    save_png(out, image_grid(frames, steps))
    print0(f"rendered {steps} images from seed {seeds[0]} to {seeds[1]} ({space} space) at "
           f"{shape[0]}x{shape[1]} in {time.perf_counter() - start:.2f} s -> {out}")
    return out


def _report_low_res(G: InrGanGenerator, thetas, shape, base, chunk) -> None:
    """Accelerated low-resolution inference: every block runs on its correspondingly sparser grid. Print
    the MACs per image at this size against the training size, and both measured render times."""
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
def _frequency_histogram(G: InrGanGenerator, seeds: list[int], psi: float, out: Path) -> Path:
    """App. Fig. 16: the distribution of |W_i| (radians per unit of [0, 1]) per block over the seeds."""
    if not G.config.get("fourier", True):
        raise InrkitError("this generator has no Fourier features (fourier=False); there are no frequencies "
                          "to plot.")
    per_block = [torch.cat(f) for f in zip(*(G.fourier_frequencies(t) for t in seed_params(G, seeds, psi)),
                                           strict=True)]
    plt = pyplot()

    blocks = G.config["blocks"]
    fig, axes = plt.subplots(1, len(per_block), figsize=(3.2 * len(per_block), 2.8), dpi=120, squeeze=False)
    for k, (ax, values) in enumerate(zip(axes[0], per_block, strict=True)):
        v = values.flatten().float().cpu().numpy()
        ax.hist(v, bins=min(50, max(5, v.size // 4)), color=f"C{k}")
        ax.set_title(f"block {k} ({blocks[k][0]}px)")
        ax.set_xlabel("frequency |w| (rad / unit)")
        ax.set_ylabel("count" if k == 0 else "")
    fig.suptitle(f"Fourier feature frequencies over {len(seeds)} seeds")
    save_figure(out, fig)
    print0(f"frequency histogram of {len(per_block)} blocks over {len(seeds)} seeds -> {out}")
    return out
