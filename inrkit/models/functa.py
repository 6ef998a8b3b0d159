"""Spatial functa (Bauer et al. 2023, "Spatial Functa: Scaling Functa to ImageNet Classification and Generation").

A SIREN f_theta whose every hidden layer takes a shift modulation: h <- sin(w0 (W h + b + m_x)) (App. A).
The per-image latent z (s, s, c) is mapped to spatially arranged modulations m = lambda(z) (s, s, C) by one
convolution (1x1 by default, 3x3 as in Tab. 3*), C = (depth - 1) * width, and m is read at each coordinate x by
  nearest:  m_x is the latent cell holding x; the SIREN sees per-patch local coordinates in [0, 1]^2 (App. C);
  bilinear: m_x interpolates the four nearest cell centres; the SIREN sees the binary code of the global pixel
            index, 2 * ceil(log2 d) bits for a d x d image (App. C: (3/32, 5/32) -> 00011 00101).
s = 1 with a 1x1 convolution is the original functa (Dupont et al. 2022): one global latent, a linear map.

Conventions. Coordinates are pixel centres of [0, 1]^2 in axis order (y, x), as in inrkit.fields.grid. Latents
are channels-last (B, s, s, c) as the paper writes them. Outputs live in [0, 1] (the SIREN output plus 0.5, as
in the functa code, so a zero network predicts mid-grey); images in [-1, 1] are mapped to [0, 1] before fitting.
Outside [0, 1] (zoom-out) the edge latent cells extend: nearest keeps the edge patch and lets its local
coordinates run past [0, 1]; bilinear clamps to the edge cells; the binary code wraps (bits of the index mod 2^m).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from inrkit.core.errors import InrkitError
from inrkit.fields.grid import Range, grid_points

INTERPS = ("nearest", "bilinear")
KERNELS = (1, 3)
COORDS = ("unit", "signed")  # SIREN input as App. C writes it ([0, 1], {0, 1} bits), or mapped to [-1, 1]
SIREN_BIASES = ("zero", "uniform")  # functa code: zero biases (B.1); Sitzmann et al.: U(+-bound)
META_LR_INIT = (0.005, 0.1)  # Meta-SGD rates start uniform in this range (functa code)
META_LR_CLIP = (0.0, 1.0)  # ... and are kept in this range (functa code)
DENSE_READ_MAX_CELLS = 256  # bilinear reads of grids up to 16 x 16 use a dense interpolation matrix


def parse_latent(text: str) -> tuple[int, int, int]:
    """'8x8x16' -> (8, 8, 16); a bare '1024' is the flat functa latent (1, 1, 1024)."""
    try:
        parts = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        raise InrkitError(f"--latent {text!r} is not a latent shape; write SxSxC (e.g. 8x8x16) or C.") from None
    if len(parts) == 1:
        parts = (1, 1) + parts
    if len(parts) != 3 or parts[0] != parts[1] or min(parts) < 1:
        raise InrkitError(f"--latent {text!r} must be a square SxSxC with positive sizes (e.g. 8x8x16) or C.")
    return parts


def check_latent_fits(latent: tuple[int, int, int], resolution: int) -> None:
    """The s x s latent tiles the d x d image in d/s x d/s patches (Sec. 4), so s must divide d."""
    s = latent[0]
    if resolution % s:
        raise InrkitError(f"a {s}x{s} latent grid does not divide {resolution}x{resolution} images into equal "
                          f"patches; choose a latent side that divides {resolution}.")


def binary_bits(resolution: int) -> int:
    """Bits per axis of the binary coordinate code: m for a 2^m image (App. C), ceil(log2 d) in general."""
    return max(1, math.ceil(math.log2(resolution)))


def cell_index(coords: torch.Tensor, s: int) -> torch.Tensor:
    """(N, 2) coordinates -> (N, 2) integer latent cell (row, col) holding them, edge cells extended."""
    return torch.floor(coords * s).long().clamp(0, s - 1)


def local_coords(coords: torch.Tensor, s: int) -> torch.Tensor:
    """Per-patch coordinates (App. C): x * s - cell, in [0, 1] inside the image; for s = 1 the global ones."""
    return coords * s - cell_index(coords, s).to(coords.dtype)


def binary_coords(coords: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, 2) -> (N, 2 * bits) in {0, 1}: the bits (most significant first) of the y then x pixel index."""
    bits = binary_bits(resolution)
    index = torch.floor(coords * resolution).long() % (2**bits)  # pixel index; wraps outside the image
    shifts = torch.arange(bits - 1, -1, -1, device=coords.device)
    code = (index[..., None] >> shifts) & 1  # (N, 2, bits)
    return code.flatten(-2).to(coords.dtype)


def nearest_taps(coords: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat latent cell index (N, 1) and weight (N, 1) of the nearest read."""
    cell = cell_index(coords, s)
    return (cell[:, 0] * s + cell[:, 1])[:, None], torch.ones_like(coords[:, :1])


def bilinear_taps(coords: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices (N, 4) and weights (N, 4) of the four cell centres around each coordinate.

    Cell (i, j) is centred at ((i + 0.5) / s, (j + 0.5) / s); beyond the outer centres the edge value holds
    (torch's align_corners=False with border padding).
    """
    p = coords * s - 0.5
    lo = torch.floor(p)
    t = p - lo  # (N, 2) fractional offsets
    lo = lo.long()
    rows = [(lo[:, 0]).clamp(0, s - 1), (lo[:, 0] + 1).clamp(0, s - 1)]
    cols = [(lo[:, 1]).clamp(0, s - 1), (lo[:, 1] + 1).clamp(0, s - 1)]
    wy = [1 - t[:, 0], t[:, 0]]
    wx = [1 - t[:, 1], t[:, 1]]
    index = torch.stack([rows[a] * s + cols[b] for a in (0, 1) for b in (0, 1)], dim=1)
    weight = torch.stack([wy[a] * wx[b] for a in (0, 1) for b in (0, 1)], dim=1)
    return index, weight


def interpolation_matrix(index: torch.Tensor, weight: torch.Tensor, cells: int) -> torch.Tensor:
    """The taps as a dense (N, cells) matrix: reading becomes one matrix product (fast when cells is small)."""
    return torch.zeros(index.shape[0], cells, dtype=weight.dtype, device=weight.device).scatter_add_(1, index, weight)


def read_modulations(m: torch.Tensor, index: torch.Tensor, weight: torch.Tensor,
                     matrix: torch.Tensor | None = None) -> torch.Tensor:
    """m (B, s, s, C) read at N points with taps index/weight (N, K), or their dense matrix -> (B, N, C)."""
    flat = m.flatten(1, 2)  # (B, s*s, C)
    if matrix is not None:
        return torch.matmul(matrix, flat)
    if index.shape[1] == 1:  # nearest: a plain gather, weight 1
        return flat[:, index[:, 0]]
    out = flat[:, index[:, 0]] * weight[:, 0, None]
    for k in range(1, index.shape[1]):
        out = out + flat[:, index[:, k]] * weight[:, k, None]
    return out


class SpatialFuncta(nn.Module):
    """Shared parameters of (spatial) functa: SIREN theta, latent-to-modulation conv lambda, Meta-SGD rates.

    latent:     (s, s, c); s = 1 is the flat functa.
    resolution: the training image side d (s must divide it; fixes the binary code length).
    width, depth, w0: the SIREN; depth linear layers in all, of which depth - 1 are modulated sine layers.
    interp:     nearest (local coordinates) or bilinear (binary global coordinates), App. C.
    kernel:     1 or 3: the latent-to-modulation convolution (3x3: Tab. 3*).
    coords:     unit: the SIREN sees App. C's inputs as written, per-patch coordinates in [0, 1]^2 or bits in
                {0, 1}; signed: the same mapped to [-1, 1] (inrkit before issue 11: it doubles the nearest
                SIREN's first-layer frequency; artifacts without the key were trained this way).
    siren_bias: zero (the functa reference code, B.1) or uniform (Sitzmann et al.) SIREN bias initialisation;
                training only, so not part of the stored config.
    The Meta-SGD rates `meta_lr` have one entry per latent dimension, shape (s, s, c).
    """

    def __init__(self, latent=(8, 8, 16), resolution=32, channels=3, width=256, depth=6, w0=10.0,
                 interp="nearest", kernel=1, coords="unit", siren_bias="zero"):
        super().__init__()
        latent = tuple(int(v) for v in latent)
        if interp not in INTERPS:
            raise InrkitError(f"unknown --interp {interp!r}; choose nearest or bilinear.")
        if kernel not in KERNELS:
            raise InrkitError(f"--kernel must be 1 or 3 (the latent-to-modulation convolution), got {kernel}.")
        if coords not in COORDS:
            raise InrkitError(f"unknown --coords {coords!r}; choose unit or signed.")
        if siren_bias not in SIREN_BIASES:
            raise InrkitError(f"unknown --siren-bias {siren_bias!r}; choose zero or uniform.")
        if depth < 2 or width < 1:
            raise InrkitError(f"the SIREN needs depth >= 2 and width >= 1, got depth {depth} and width {width}.")
        check_latent_fits(latent, resolution)
        self.config = dict(arch="spatial-functa", latent=list(latent), resolution=resolution, channels=channels,
                           width=width, depth=depth, w0=w0, interp=interp, kernel=kernel, coords=coords)
        self.latent, self.resolution, self.w0, self.width, self.interp = latent, resolution, w0, width, interp
        self.coords, self.siren_bias = coords, siren_bias
        s, _, c = latent
        in_dim = 2 if interp == "nearest" else 2 * binary_bits(resolution)
        self.to_modulation = nn.Conv2d(c, (depth - 1) * width, kernel, padding=kernel // 2)
        self.layers = nn.ModuleList(nn.Linear(in_dim if i == 0 else width, width) for i in range(depth - 1))
        self.out = nn.Linear(width, channels)
        self.meta_lr = nn.Parameter(torch.empty(s, s, c))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """SIREN init (Sitzmann et al. Sec. 3.2) for the weights of theta, biases zero (functa code) or uniform;
        lambda ~ N(0, 1/fan_in), zero bias (a zero latent gives zero modulation); Meta-SGD rates uniform in
        META_LR_INIT."""
        for i, layer in enumerate(self.layers):
            n = layer.in_features
            bound = 1.0 / n if i == 0 else math.sqrt(6.0 / n) / self.w0
            layer.weight.uniform_(-bound, bound)
            if self.siren_bias == "zero":
                layer.bias.zero_()
            else:
                layer.bias.uniform_(-bound, bound)
        self.out.weight.uniform_(-math.sqrt(6.0 / self.width) / self.w0, math.sqrt(6.0 / self.width) / self.w0)
        self.out.bias.zero_()
        fan_in = self.to_modulation.in_channels * self.to_modulation.kernel_size[0] ** 2
        self.to_modulation.weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
        self.to_modulation.bias.zero_()
        self.meta_lr.uniform_(*META_LR_INIT)

    def learning_rates(self) -> torch.Tensor:
        """The Meta-SGD rates (s, s, c), clipped to META_LR_CLIP."""
        return self.meta_lr.clamp(*META_LR_CLIP)

    @torch.no_grad()
    def clip_learning_rates(self) -> None:
        """Project the stored rates back into META_LR_CLIP after an outer step."""
        self.meta_lr.clamp_(*META_LR_CLIP)

    def zero_latents(self, batch: int) -> torch.Tensor:
        """The inner loop's starting point (App. A): zeros (B, s, s, c)."""
        return torch.zeros(batch, *self.latent, device=self.meta_lr.device, dtype=self.meta_lr.dtype)

    def modulations(self, z: torch.Tensor) -> torch.Tensor:
        """m = lambda(z): (B, s, s, c) -> (B, s, s, (depth - 1) * width)."""
        return self.to_modulation(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def coordinate_inputs(self, coords: torch.Tensor) -> torch.Tensor:
        """(N, 2) -> the SIREN input (N, in_dim): App. C's per-patch coordinates or bits, mapped to [-1, 1]
        when coords is signed."""
        x = local_coords(coords, self.latent[0]) if self.interp == "nearest" else binary_coords(coords, self.resolution)
        return x * 2 - 1 if self.coords == "signed" else x

    def taps(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Where each coordinate reads the modulation grid: indices and weights (N, K), and for bilinear reads
        of small grids the same as a dense (N, s*s) matrix (one matrix product beats four gathers)."""
        s = self.latent[0]
        if self.interp == "nearest":
            return (*nearest_taps(coords, s), None)
        index, weight = bilinear_taps(coords, s)
        dense = s * s <= DENSE_READ_MAX_CELLS
        return index, weight, interpolation_matrix(index, weight, s * s) if dense else None

    def forward(self, z: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """f_theta(x; m_x): latents (B, s, s, c) and coordinates (N, 2) shared by the batch -> (B, N, channels).

        Each layer is sin(w0 (W h + b + m_x)); w0 multiplies the small tensors (weights, the s x s grid of
        modulations) rather than the (B, N, width) activations, and m is read one layer at a time.
        """
        m = self.modulations(z) * self.w0  # (B, s, s, C)
        taps = self.taps(coords)
        h = self.coordinate_inputs(coords)
        for i, layer in enumerate(self.layers):
            m_x = read_modulations(m[..., i * self.width : (i + 1) * self.width], *taps)  # (B, N, width)
            h = torch.sin(F.linear(h, layer.weight * self.w0, layer.bias * self.w0) + m_x)
        return self.out(h) + 0.5

    @torch.no_grad()
    def render(self, z: torch.Tensor, shape: tuple[int, int] | None = None, ranges: list[Range] | None = None,
               chunk: int = 2**14) -> torch.Tensor:
        """Evaluate latents (B, s, s, c) on a pixel-centre grid in chunks of points -> (B, H, W, channels)."""
        shape = shape or (self.resolution, self.resolution)
        total = shape[0] * shape[1]
        parts = [self(z, grid_points(shape, ranges, a, min(a + chunk, total)).to(z.device))
                 for a in range(0, total, chunk)]
        return torch.cat(parts, dim=1).view(z.shape[0], *shape, -1)


def build_functa(config: dict) -> SpatialFuncta:
    """Rebuild the model from the config stored in its artifact (one without `coords` predates the key and was
    trained with signed inputs)."""
    cfg = dict(config)
    cfg.setdefault("coords", "signed")
    arch = cfg.pop("arch", None)
    if arch != "spatial-functa":
        raise InrkitError(f"unknown functa architecture {arch!r} in the artifact config; expected spatial-functa.")
    return SpatialFuncta(**cfg)
