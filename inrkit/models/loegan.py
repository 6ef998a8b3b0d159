"""LoE-GAN and its PE + CE baseline (Levels-of-Experts, Hao et al. 2022: Sec. 4.4, supp. E, Tables 4 and 11).

Generator f(p, z) (supp. E, Fig. 10; a simplified CIPS "residual" network): per pixel,
    x_0 = W_1 [gamma(p); e(p); z] + b_1                    gamma: positional encoding, 8 frequencies (34 dims)
    x_k = x_{k-1} + U_k lrelu(V_k(p) lrelu(x_{k-1}))       k = 1..7, the residual blocks
    rgb = W_out lrelu(x_7) + b_out                          raw linear RGB, compared with images in [-1, 1]
Leaky ReLU 0.2 (supp. A). `loe-gan`: V_k(p) is a nearest-blended LoE layer (inrkit.fields.loe.LoELinear: a tile of
t_k x t_k candidates on a grid A = r_k I, b = 0 as in supp. C), U_k a plain linear layer, and there is no e(p).
`pe-ce`: V_k is a plain linear layer and e(p) is a learnable 256-channel 256x256 coordinate embedding, bilinear at
p (texel (i, j) at its centre ((i + 1/2) / 256, (j + 1/2) / 256), clamped to the edge texels outside). The noise z
enters the first layer only ("directly fed into the first layer", Sec. 4.4); as it is the same for every pixel,
its product W_1^z z is computed once per image, which is why it costs parameters but (almost) no MACs per pixel.

Sizes (Fig. 10 is lost from the text; these are derived from Table 4's four numbers). MACs are counted as
inrkit.models.macs counts them (matrix products only, per image, divided by the pixels; bilinear lookups and
activations are element-wise):
 1. PE + CE costs 1.39M - 1.26M = 0.13M MACs per pixel more than LoE, and the two differ only in e(p) feeding the
    first layer: 256 x C_1 = 0.13M gives C_1 = 508, so the first layer (and the residual stream) has 512 channels.
 2. PE + CE has 19.9M - 256*256*256 (16.78M, the embedding) = 3.12M network parameters but only 1.39M MACs per
    pixel, so ~1.73M parameters are used once per image: the z columns of the first layer, z_dim x 512 = 1.73M,
    z_dim = 3380; we take z_dim = 3328 (13 x 256).
 3. LoE's 1.26M MACs per pixel: 34*512 (first layer) + 7 * 2 * 512 * H (blocks 512 -> H -> 512) + 512*3 (RGB) =
    1.26M gives a bottleneck H = 173; we take H = 172 (1,251,840 MACs per pixel, -0.65%; PE + CE 1,382,912, -0.51%).
 4. LoE's parameters: 19.6M - 1.25M (per-pixel weights) - 1.70M (z columns) - biases = 16.64M extra, which the
    candidates give as sum_k (t_k^2 - 1) * 512 * 172: sum_k (t_k^2 - 1) = 189 = 3 + 4*15 + 2*63, i.e. tiles
    2, 4, 4, 4, 4, 8, 8 (coarse to fine, the smallest tile first as in supp. C). Grid resolutions r_k = 2, 8, 16,
    32, 64, 128, 256 (each >= its tile so every tile is seen whole; the finest at the pixel pitch of 256, never
    finer, as Table 6's dagger; all powers of two, so the 256x256 grid takes LoE's fast full-grid path).
 Result (count_params / count_macs, equal to the built model's numel and to FlopCounterMode): LoE-GAN 19,605,175
 params (+0.03%) / 1,251,866 MACs per pixel (-0.65%); PE + CE 19,869,367 params (-0.15%) / 1,382,938 MACs per pixel
 (-0.51%), against Table 4's 19.6M / 1.26M and 19.9M / 1.39M (the z columns add 3328 * 512 / 256^2 = 26 MACs per
 pixel at 256x256).

Discriminator (supp. E): two 5-layer patch discriminators (3x3 stride-2 convolutions with padding 1, Leaky ReLU
0.2, channels 64, 128, 256, 512, 1), one on the image and one on its 2x2-average-pooled half, each weight under
spectral normalisation (Miyato et al. 2018: one power iteration per training forward, u and v kept as buffers so
a resume continues them). Its output is one map of patch logits per scale. Hinge losses (Eqs. 9-10) average
each scale's map and add the scales.

Layouts. Activations are point-major (P, B, C) flattened to (P * B, C): the rows of a point for all B samples are
adjacent, so on the full grid an LoE layer's candidate blocks stay contiguous (LoELinear.forward_blocks) and a
change of grid layout is one strided copy of (P, B * C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from inrkit.core.errors import InrkitError
from inrkit.fields.encoding import PositionalEncoding
from inrkit.fields.grid import Range, grid_on
from inrkit.fields.loe import SLOPE, LoELinear, permute_grid_rows, plan_grid_phases
from inrkit.models.macs import conv2d_macs, linear_macs

ARCHS = ("loe-gan", "pe-ce")
D_CHANNELS = (64, 128, 256, 512, 1)  # the five 3x3 stride-2 convolutions of one patch discriminator
D_BASE = D_CHANNELS[0]  # --loe-d-base scales them: base * (1, 2, 4, 8), then 1
D_SCALES = 2  # the image and its 1/2 downsampled copy
# Five stride-2 halvings of the full image land exactly on a (R / 32)^2 patch map only if 32 divides R.
D_MULTIPLE = 2 ** len(D_CHANNELS)


def generator_config(
    arch: str = "loe-gan",  # "loe-gan" (LoE weights in the blocks) or "pe-ce" (coordinate embedding input)
    resolution: int = 256,  # training images are resolution x resolution
    z_dim: int = 3328,  # noise vector, fed into the first layer (derivation step 2)
    width: int = 512,  # first layer and residual stream (step 1)
    hidden: int = 172,  # the residual blocks' bottleneck (step 3)
    frequencies: int = 8,  # positional encoding (supp. E)
    tiles: tuple[int, ...] = (2, 4, 4, 4, 4, 8, 8),  # LoE tile side per block (step 4); its length is the blocks
    grid_resolutions: tuple[int, ...] = (2, 8, 16, 32, 64, 128, 256),  # LoE grid A = r I per block
    embedding_channels: int = 256,  # PE + CE: the coordinate embedding (supp. E)
    embedding_size: int = 256,
    out_channels: int = 3,
) -> dict:
    """Resolve and check a LoE-GAN / PE + CE generator configuration (JSON-able; rebuilds the model alone)."""
    if arch not in ARCHS:
        raise InrkitError(f"unknown LoE-GAN architecture {arch!r}; expected one of {', '.join(ARCHS)}.")
    sizes = dict(resolution=resolution, z_dim=z_dim, width=width, hidden=hidden, frequencies=frequencies,
                 embedding_channels=embedding_channels, embedding_size=embedding_size, out_channels=out_channels)
    for name, value in sizes.items():
        if int(value) != value or int(value) < 1:
            raise InrkitError(f"{name} must be a positive integer, got {value}.")
    if len(tiles) != len(grid_resolutions) or not tiles:
        raise InrkitError(f"tiles and grid_resolutions need one entry per residual block, got {len(tiles)} and "
                          f"{len(grid_resolutions)}.")
    if min(tiles) < 2 or min(grid_resolutions) < 1:
        raise InrkitError("LoE tiles need at least 2 candidates per axis and grid resolutions must be positive.")
    return dict(arch=arch, **{k: int(v) for k, v in sizes.items()}, tiles=[int(t) for t in tiles],
                grid_resolutions=[int(r) for r in grid_resolutions])


def encoding_dim(cfg: dict) -> int:
    """Per-point input of the first layer: gamma(p) (2 * (2L + 1)), plus e(p) for PE + CE."""
    return 2 * (2 * cfg["frequencies"] + 1) + (cfg["embedding_channels"] if cfg["arch"] == "pe-ce" else 0)


def _candidates(cfg: dict) -> list[int]:
    """Weight candidates of each block's first linear layer (1: a plain layer)."""
    return [t * t if cfg["arch"] == "loe-gan" else 1 for t in cfg["tiles"]]


def count_params(cfg: dict) -> dict[str, int]:
    """Parameters by component, in closed form (the tests check it against the built model)."""
    w, h = cfg["width"], cfg["hidden"]
    params = {
        "first": (encoding_dim(cfg) + cfg["z_dim"]) * w + w,
        "embedding": cfg["embedding_channels"] * cfg["embedding_size"] ** 2 if cfg["arch"] == "pe-ce" else 0,
        "blocks": sum(n * w * h + h + h * w + w for n in _candidates(cfg)),
        "rgb": w * cfg["out_channels"] + cfg["out_channels"],
    }
    return params | {"total": sum(params.values())}


def count_macs(cfg: dict, shape: tuple[int, int] | None = None) -> dict[str, int]:
    """MACs to generate one image on a grid of `shape` (default: the training size), by component. Nearest LoE
    blending multiplies one candidate per point, as a plain layer does."""
    shape = shape or (cfg["resolution"],) * 2
    pixels, w, h = shape[0] * shape[1], cfg["width"], cfg["hidden"]
    macs = {
        "latent": linear_macs(cfg["z_dim"], w),  # W_1^z z, once per image
        "input": linear_macs(encoding_dim(cfg), w, pixels),
        "blocks": len(cfg["tiles"]) * (linear_macs(w, h, pixels) + linear_macs(h, w, pixels)),
        "rgb": linear_macs(w, cfg["out_channels"], pixels),
    }
    return macs | {"total": sum(macs.values())}


def generator_summary(cfg: dict) -> dict:
    """What `--dry-run` prints: parameters, MACs per pixel and GMACs per image at the training size."""
    macs = count_macs(cfg)
    per_pixel = macs["total"] / cfg["resolution"] ** 2
    return {"config": cfg, "params": count_params(cfg)["total"], "macs_per_pixel": per_pixel,
            "gmacs_per_image": macs["total"] / 1e9, "macs_by_component": macs}


def raster_layout(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """The bits of raster order on a power-of-two grid, most significant first: (axis, bit level), axis 0's bits
    first (the `src` layout of inrkit.fields.loe.permute_grid_rows for a row-major grid)."""
    return [(a, level) for a, n in enumerate(shape) for level in reversed(range(n.bit_length() - 1))]


class LoeGanGenerator(nn.Module):
    """f(p, z) of supp. E; `field(z, coords)` on any coordinates, `render(z, shape, ranges)` on any grid (LoE's
    fast full-grid path where the grid allows it), `forward(z)` the (B, C, R, R) training images."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = cfg = generator_config(**config)
        w, h = cfg["width"], cfg["hidden"]
        self.encoding = PositionalEncoding(2, cfg["frequencies"])
        self.embedding = None
        if cfg["arch"] == "pe-ce":  # CIPS initialises its coordinate embedding N(0, 1)
            size = cfg["embedding_size"]
            self.embedding = nn.Parameter(torch.randn(1, cfg["embedding_channels"], size, size))
        self.first = nn.Linear(encoding_dim(cfg) + cfg["z_dim"], w)  # one layer over [gamma(p); e(p); z]
        self.inner = nn.ModuleList(
            LoELinear(w, h, t, 2, r * torch.eye(2), torch.zeros(2)) if cfg["arch"] == "loe-gan" else nn.Linear(w, h)
            for t, r in zip(cfg["tiles"], cfg["grid_resolutions"], strict=True))
        self.outer = nn.ModuleList(nn.Linear(h, w) for _ in cfg["tiles"])
        self.rgb = nn.Linear(w, cfg["out_channels"])
        for layer in [self.first, self.rgb, *self.inner, *self.outer]:  # supp. A: Kaiming uniform, zero biases
            nn.init.zeros_(layer.bias)
        self.plans: dict = {}  # full-grid layouts per shape (reading the grid transforms waits for a GPU)
        self.register_load_state_dict_post_hook(lambda module, keys: module.plans.clear())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_image(self, shape: tuple[int, int] | None = None) -> int:
        return count_macs(self.config, shape)["total"]

    def sample_z(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.config["z_dim"], generator=generator, device=self.first.weight.device)

    def coordinate_embedding(self, coords: torch.Tensor) -> torch.Tensor:
        """e(p) (P, channels) for coords (P, 2) in (y, x): bilinear, exact at texel centres (align_corners=False
        puts texel i at (i + 1/2) / size), the edge texels outside [0, 1] (border padding)."""
        grid = (2 * coords.flip(-1) - 1).view(1, 1, -1, 2).to(self.embedding.dtype)  # grid_sample reads (x, y)
        sampled = F.grid_sample(self.embedding, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled[0, :, 0].T

    def _first_layer(self, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x_0 (P, B, width): the per-point columns of W_1 on gamma(p) [and e(p)], the z columns once per image."""
        features = self.encoding(coords)
        if self.embedding is not None:
            features = torch.cat([features, self.coordinate_embedding(coords)], dim=-1)
        n = features.shape[-1]
        per_point = F.linear(features, self.first.weight[:, :n], self.first.bias)
        per_image = F.linear(z.to(per_point.dtype), self.first.weight[:, n:])
        return per_point[:, None, :] + per_image[None, :, :]

    def _trunk(self, x: torch.Tensor, apply_inner, move=None) -> torch.Tensor:
        """The residual blocks and the RGB layer on x (P, B, width) -> (P, B, out). apply_inner(k, rows) runs
        block k's first linear layer; move(x, k), if given, relays x out for block k first."""
        points, batch, width = x.shape
        for k, outer in enumerate(self.outer):
            if move is not None:
                x = move(x, k)
            h = apply_inner(k, F.leaky_relu(x, SLOPE).reshape(points * batch, width))
            x = x + outer(F.leaky_relu(h, SLOPE)).view(points, batch, width)
        return self.rgb(F.leaky_relu(x, SLOPE))

    def field(self, z: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim), coords (P, 2) in (y, x), any values -> (B, P, out)."""
        coords = coords.reshape(-1, 2).to(self.first.weight.dtype)
        rows = coords.repeat_interleave(z.shape[0], dim=0)  # point-major: row p * B + b is point p

        def apply_inner(k, a):
            layer = self.inner[k]
            return layer(a, rows) if isinstance(layer, LoELinear) else layer(a)

        return self._trunk(self._first_layer(coords, z), apply_inner).transpose(0, 1)

    def grid_layouts(self, shape: tuple[int, int]) -> list | None:
        """Each block's point layout on the [0, 1] pixel grid of `shape` for LoE's fast path (its candidate bits
        on top: N contiguous row blocks), or None where the grid does not have that structure."""
        if self.config["arch"] != "loe-gan":
            return None
        groups = [layer.grid_bits(tuple(shape)) for layer in self.inner]
        if any(g is None for g in groups):
            return None
        return [phase.layout for phase in plan_grid_phases(groups, tuple(shape)) for _ in range(phase.n_layers)]

    def render(self, z: torch.Tensor, shape: tuple[int, int], ranges: list[Range] | None = None,
               chunk: int | None = None) -> torch.Tensor:
        """The pixel-centre grid of `shape` over `ranges` -> (B, H, W, out); `chunk` points at a time off the fast
        path (the fast path takes the whole grid)."""
        shape = tuple(int(n) for n in shape)
        full = ranges is None or all(tuple(r) == (0.0, 1.0) for r in ranges)
        if full and shape not in self.plans:
            self.plans[shape] = self.grid_layouts(shape)
        if full and self.plans[shape] is not None:
            return self._render_fast(z, shape, self.plans[shape])
        coords = grid_on(shape, ranges, self.first.weight.device, self.first.weight.dtype).reshape(-1, 2)
        step = chunk or coords.shape[0]
        parts = [self.field(z, coords[i:i + step]) for i in range(0, coords.shape[0], step)]
        return torch.cat(parts, dim=1).view(z.shape[0], *shape, -1)

    def _render_fast(self, z: torch.Tensor, shape: tuple[int, int], layouts: list) -> torch.Tensor:
        """LoE's full-grid path: points in block k's layout make its LoE layer one batched matmul."""
        grid = grid_on(shape, None, self.first.weight.device, self.first.weight.dtype).reshape(-1, 2)
        raster, current = raster_layout(shape), [layouts[0]]

        def move(x, k):  # one strided copy when block k's candidate bits differ from the last block's
            if layouts[k] != current[0]:
                x = permute_grid_rows(x.reshape(x.shape[0], -1), current[0], layouts[k]).view(x.shape)
                current[0] = layouts[k]
            return x

        x = self._first_layer(permute_grid_rows(grid, raster, layouts[0]), z)
        out = self._trunk(x, lambda k, a: self.inner[k].forward_blocks(a), move)
        out = permute_grid_rows(out.reshape(out.shape[0], -1), current[0], raster)
        return out.view(*shape, z.shape[0], -1).movedim(2, 0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) -> images (B, out, R, R) at the training resolution, raw (compared with [-1, 1])."""
        side = self.config["resolution"]
        return self.render(z, (side, side)).permute(0, 3, 1, 2)


# ---------------------------------------------------------------- discriminator and objective (supp. E)


def discriminator_config(resolution: int = 256, in_channels: int = 3, base: int = D_BASE) -> dict:
    """Resolve and check the two-scale patch discriminator's configuration (base: the first convolution's
    channels, doubled per layer; artifacts without the key have supp. E's 64)."""
    if int(resolution) != resolution or resolution < D_MULTIPLE or resolution % D_MULTIPLE:
        raise InrkitError(f"the patch discriminator needs a resolution that is a multiple of {D_MULTIPLE} (its "
                          f"{len(D_CHANNELS)} stride-2 convolutions halve the image exactly), got {resolution}.")
    if int(in_channels) != in_channels or in_channels < 1:
        raise InrkitError(f"in_channels must be a positive integer, got {in_channels}.")
    if int(base) != base or base < 1:
        raise InrkitError(f"the discriminator's base channels (--loe-d-base) must be a positive integer, got {base}.")
    return dict(resolution=int(resolution), in_channels=int(in_channels), base=int(base))


def d_channels(base: int = D_BASE) -> tuple[int, ...]:
    """Output channels of the five convolutions: base, 2 base, 4 base, 8 base, then one logit (supp. E at 64)."""
    return tuple(base * 2**i for i in range(len(D_CHANNELS) - 1)) + (1,)


def patch_discriminator(in_channels: int, base: int = D_BASE) -> nn.Sequential:
    """Five spectrally normalised 3x3 stride-2 convolutions with Leaky ReLU between them -> (B, 1, h, w) logits."""
    layers, cin = [], in_channels
    for i, cout in enumerate(d_channels(base)):
        conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        nn.init.zeros_(conv.bias)  # supp. A; the weights keep PyTorch's Kaiming-uniform default
        layers.append(spectral_norm(conv))
        if i + 1 < len(D_CHANNELS):
            layers.append(nn.LeakyReLU(SLOPE))
        cin = cout
    return nn.Sequential(*layers)


class MultiScalePatchDiscriminator(nn.Module):
    """Patch discriminators on the image and on its 2x2-average-pooled half: a list of logit maps, one per scale."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = discriminator_config(**config)
        self.scales = nn.ModuleList(patch_discriminator(self.config["in_channels"], self.config["base"])
                                    for _ in range(D_SCALES))

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for k, disc in enumerate(self.scales):
            maps.append(disc(img if k == 0 else F.avg_pool2d(img, 2 ** k)))
        return maps

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_image(self) -> int:
        total = 0
        for k in range(D_SCALES):
            side, cin = self.config["resolution"] // 2**k, self.config["in_channels"]
            for cout in d_channels(self.config["base"]):
                side = math.ceil(side / 2)
                total += conv2d_macs(cin, cout, 3, side, side)
                cin = cout
        return total


def _scales(logits) -> list[torch.Tensor]:
    return list(logits) if isinstance(logits, (list, tuple)) else [logits]


def hinge_d_loss(real_logits, fake_logits) -> torch.Tensor:
    """Eq. 9: L_D = -E[min(0, -1 + D(x))] - E[min(0, -1 - D(G(z)))], each expectation a mean over samples and
    patches, summed over the discriminator's scales (a tensor or a list of one tensor per scale)."""
    total = 0.0
    for real, fake in zip(_scales(real_logits), _scales(fake_logits), strict=True):
        total = total - torch.clamp(real.float() - 1, max=0).mean() - torch.clamp(-fake.float() - 1, max=0).mean()
    return total


def hinge_g_loss(fake_logits) -> torch.Tensor:
    """Eq. 10: L_G = -E[D(G(z))], a mean per scale, summed over the scales."""
    return sum(-fake.float().mean() for fake in _scales(fake_logits))
