"""The LoE-GAN family (kind `loe-generator`: Levels-of-Experts supp. E, `loe-gan` and its `pe-ce` baseline):
rebuilding a generator, the render interface and its source of samples for FID.

An artifact holds `config["generator"]` (the keyword arguments of inrkit.models.loegan.generator_config) and the
model's state dict. The family's codes are the noise vectors z themselves (the INR is f(., z); there is no
hypernetwork and no w space, hence no truncation). Sample k draws z from inrkit.models.sampling.sample_latents
and is rendered on its own, so an image depends on its seed and index only. Registered in
inrkit.models.registry.FAMILIES; `inrkit train-gan --arch loe-gan|pe-ce` writes it (inrkit.stages.train_loe_gan).

`inrkit render` (render below): seeds on any grid (--size, --scale, --grid; a size below the training size is
low-resolution inference, reported with its MACs and times), and --interpolate A,B in the INR's input space (z
lerped: the INR is f(., z)) or in pixel space. No --psi other than 1 (no w space).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import Value, check_config, require_suffix
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.runtime import pick_device, print0
from inrkit.fields.grid import Range, output_shape
from inrkit.models.loegan import ARCHS, LoeGanGenerator, count_macs, count_params, generator_config
from inrkit.models.sampling import Sampler, quantize, sample_latents

KIND = "loe-generator"
RENDER_OPTIONS = ("seeds", "psi", "interpolate", "steps", "space")
DEFAULT_SEEDS = 16
SPACES = ("inr", "pixel")  # inr: z lerped (the INR's input); pixel: the two end images blended
GRID_BUFFERS = 2 * 2 + 2  # each LoE layer stores its grid transform A (2x2) and b (2) with the weights
SIDE, WIDTH = Value(int, 1, 2**14), Value(int, 1, 2**14)  # far above any real model, as inrkit.models.validate
GENERATOR = dict(  # a rule for every keyword of loegan.generator_config
    arch=Value(str, choices=ARCHS), resolution=SIDE, z_dim=WIDTH, width=WIDTH, hidden=WIDTH,
    frequencies=Value(int, 1, 64), tiles=Value(list, 1, 64, items=Value(int, 2, 2**8)),
    grid_resolutions=Value(list, 1, 64, items=Value(int, 1, 2**20)), embedding_channels=WIDTH,
    embedding_size=SIDE, out_channels=Value(int, 1, 4),
)


def stored_elements(cfg: dict) -> int:
    """Elements of the state dict a config implies: the parameters and the LoE layers' grid transforms."""
    return count_params(cfg)["total"] + (GRID_BUFFERS * len(cfg["tiles"]) if cfg["arch"] == "loe-gan" else 0)


def checked_config(config, held: int, path: str | Path) -> dict:
    """The resolved config if every value is of its type and range and it implies exactly the `held` stored
    elements (so a crafted config cannot ask for more memory than the file holds); otherwise one sentence."""
    check_config(config, GENERATOR, path, "LoE-GAN generator config")
    try:
        cfg = generator_config(**config)
    except InrkitError as err:
        raise InrkitError(f"{path} has a LoE-GAN generator config that does not build ({err}); the file is "
                          "damaged or foreign.") from None
    if stored_elements(cfg) != held:
        raise InrkitError(f"{path} holds {held:,} tensor elements but its LoE-GAN config implies "
                          f"{stored_elements(cfg):,}; the file is damaged or foreign.")
    return cfg


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> LoeGanGenerator:
    """The generator an artifact holds, in eval mode on `device`."""
    config = art.config.get("generator")
    if not isinstance(config, dict):
        raise InrkitError(f"{path} is a {KIND} artifact without its generator config; the file is damaged or "
                          "foreign.")
    cfg = checked_config(config, sum(t.numel() for t in art.tensors.values()), path)
    return artifacts.load_state(LoeGanGenerator(cfg), art, path).to(device).eval()


def render_codes(G: LoeGanGenerator, z: torch.Tensor, shape: tuple[int, int], ranges: list[Range] | None = None,
                 chunk: int | None = None) -> torch.Tensor:
    """The render interface: noise vectors z (B, z_dim) on the pixel-centre grid of `shape` over `ranges` ->
    (B, H, W, C) in [0, 1] (unclamped), float32 also from a bf16 autocast."""
    return (G.render(z, shape, ranges, chunk).float() + 1) / 2


def _check_psi(psi: float) -> None:
    if not math.isclose(psi, 1.0):
        raise InrkitError(f"--psi {psi:g}: a LoE-GAN generator has no w space to truncate in (supp. E); use psi 1.")


def _seed_latents(G: LoeGanGenerator, seeds: list[int]) -> torch.Tensor:
    """Seed k's z: sample_latents(z_dim, 0, 1, k), the same z at any batch."""
    return torch.cat([sample_latents(G.config["z_dim"], 0, 1, s) for s in seeds]).to(G.first.weight.device)


@torch.no_grad()
def _draw(G: LoeGanGenerator, z: torch.Tensor, shape, grid, chunk) -> torch.Tensor:
    """(B, H, W, C) in [0, 1], one image at a time (bounded memory at any grid)."""
    return torch.cat([render_codes(G, z[k : k + 1], shape, grid, chunk).clamp(0, 1).cpu() for k in range(len(z))])


def render(art: artifacts.Artifact, path: str | Path, out: str | Path, *, size: tuple[int, ...] | None = None,
           scale: float | None = None, grid: list[Range] | None = None, chunk: int | None = None,
           device: str = "auto", seeds: list[int] | None = None, psi: float = 1.0,
           interpolate: list[int] | None = None, steps: int = 8, space: str = "inr", columns: int = 8) -> Path:
    """`inrkit render` of a LoE-GAN generator: seeds (default 0-15) in rows of `columns`, or with `interpolate`
    a row of `steps` images from the first seed to the second (z or pixels lerped)."""
    out = require_suffix(Path(out), ".png")
    _check_psi(psi)
    seeds = list(range(DEFAULT_SEEDS)) if seeds is None else list(seeds)
    if not seeds or min(seeds) < 0:
        raise InrkitError("--seeds must select non-negative seeds; write e.g. 0-15 or 3,7,10-12.")
    if interpolate is not None and (len(interpolate) != 2 or min(interpolate) < 0):
        raise InrkitError(f"--interpolate needs two non-negative seeds A,B, got {interpolate}.")
    if steps < 2:
        raise InrkitError(f"--steps must be at least 2 (the two ends), got {steps}.")
    if space not in SPACES:
        raise InrkitError(f"unknown --space {space!r}; choose inr or pixel.")
    G = build(art, path, pick_device(device))
    base = (G.config["resolution"],) * 2
    shape = output_shape(base, size, scale, grid)
    start = time.perf_counter()
    if interpolate is not None:
        ts = [i / (steps - 1) for i in range(steps)]
        a, b = _seed_latents(G, list(interpolate))
        if space == "inr":
            frames = _draw(G, torch.stack([a.lerp(b, t) for t in ts]), shape, grid, chunk)
        else:
            ends = _draw(G, torch.stack([a, b]), shape, grid, chunk)
            frames = torch.stack([(1.0 - t) * ends[0] + t * ends[1] for t in ts])
        save_png(out, image_grid(frames, steps))
        print0(f"rendered {steps} images from seed {interpolate[0]} to {interpolate[1]} ({space} space) at "
               f"{shape[0]}x{shape[1]} in {time.perf_counter() - start:.2f} s -> {out}")
        return out
    z = _seed_latents(G, seeds)
    save_png(out, image_grid(_draw(G, z, shape, grid, chunk), columns))
    print0(f"rendered {len(seeds)} samples at {shape[0]}x{shape[1]} in {time.perf_counter() - start:.2f} s -> {out}")
    if size is not None and grid is None and shape[0] * shape[1] < base[0] * base[1]:
        _report_low_res(G, z, shape, base, chunk)
    return out


def _report_low_res(G: LoeGanGenerator, z: torch.Tensor, shape, base, chunk) -> None:
    """Low-resolution inference: the per-pixel network on fewer pixels (only W_1^z z is per image). Print the
    MACs per image at both sizes and the measured render times (best of 3 after a warm-up)."""
    low, full = (count_macs(G.config, tuple(s))["total"] for s in (shape, base))
    timings = []
    for s in (shape, base):
        _draw(G, z[:1], s, None, chunk)
        timings.append(min(_timed(_draw, G, z, s, None, chunk) for _ in range(3)))
    print0(f"low-res inference: {low / 1e6:.3f} MMACs per image at {shape[0]}x{shape[1]} vs {full / 1e6:.3f} "
           f"MMACs at {base[0]}x{base[1]} ({full / max(low, 1):.2f}x fewer); measured {timings[0]:.4f} s vs "
           f"{timings[1]:.4f} s ({timings[1] / max(timings[0], 1e-9):.2f}x faster) for {len(z)} images")


def _timed(fn, *args) -> float:
    begin = time.perf_counter()
    fn(*args)
    return time.perf_counter() - begin


def sampler(G: LoeGanGenerator, *, seed: int, psi: float = 1.0, estimate: bool = True) -> Sampler:
    """G's samples for FID: sample k from sample_latents(z_dim, k, 1, seed), each rendered alone (batch 1, so the
    numbers never depend on which other samples were drawn with it)."""
    _check_psi(psi)
    device = G.first.weight.device

    @torch.no_grad()
    def draw(start: int, count: int, side: int | None) -> torch.Tensor:
        side = side or G.config["resolution"]
        z = sample_latents(G.config["z_dim"], start, count, seed).to(device)
        images = [quantize(render_codes(G, z[k : k + 1], (side, side))) for k in range(count)]
        return torch.cat(images).permute(0, 3, 1, 2).cpu()

    return Sampler(G.config["resolution"], G.config["out_channels"], draw)
