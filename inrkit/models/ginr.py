"""Locality-aware generalizable INR (Lee et al. 2023, "Locality-Aware Generalizable Implicit Neural
Representation", Sec. 3, App. A): a Transformer encoder turns an image into R latent tokens, and a locality-aware
INR decoder evaluates those tokens at any coordinates.

Encoder (Sec. 3.2, App. A). The image is cut into p x p patches by unfold; a side that p does not divide is
zero-padded to the next multiple, split as evenly as possible between both ends (178 px with p = 9: one pixel
each side, 20 x 20 = 400 patches, as IPC's `padding: 1`). Patches are embedded linearly, a learned positional
embedding is added, R learned tokens are appended, and a pre-LN Transformer (IPC's blocks: LN-MHSA, LN-MLP 4x
GELU) runs over the whole sequence. The outputs at the R learned tokens, after a final LayerNorm and a linear map
to the decoder width d (IPC's `LayerNorm + Linear` post-projection), are the latents Z (R, d).

Decoder (Sec. 3.3). With coordinates v in [0, 1]^din at pixel centres, axis order (y, x) (inrkit.fields.grid):
  Eq. 2  gamma_sigma(v) = [cos(pi w_j u_i), sin(pi w_j u_i)], u = 2 v - 1, w_j = sigma^(j / (n - 1)),
         j = 0..n-1, n = d_F / (2 din): log-spaced from 1 to sigma (IPC's `deterministic_transinr` features,
         which multiply by pi on [-1, 1] coordinates; so w_j is in cycles per unit of v, sigma at most).
  Eq. 3  h_F(v; sigma) = ReLU(W gamma_sigma(v) + b).
  Eq. 4  q_v = h_F(v; sigma_q).
  Eq. 5  m_v = MultiHeadAttention(query q_v, key Z, value Z) (selective token aggregation).
  Eq. 6  h_F^(l) = h_F(v; sigma_l), l = 1..L, sigma_1 > ... > sigma_L.
  Eq. 7  m_v^(l) = ReLU(h_F^(l) + W_m^(l) m_v + b_m^(l)).
  Eq. 8  h^(1) = m_v^(1); for l = 2..L: h~^(l) = m_v^(l) + h^(l-1), h^(l) = ReLU(W^(l) h~^(l) + b^(l)).
         (Read literally, "for l = 2..L": L - 1 hidden layers W^(l), so sigma_1's band passes through the most
         nonlinear layers, as Sec. 3.3.2 says the highest band should.)
  Eq. 9  y = sum_l f_out^(l)(h^(l)), one linear map R^d -> R^dout per level (the skip connections of Eq. 9),
         plus 0.5 (IPC's output bias, inrkit's functa convention): a zero network predicts mid-grey in [0, 1].

Ablations of Table 3, options of the same model:
  selective=False ("w/o STA"): Eq. 5 becomes IPC's instance pattern composer. The second MLP layer (the one
      after q_v = h_F(v; sigma_q), the first) takes the weight Z^T U (d x d, rank <= R): the tokens are the
      instance-specific factor and U (R, d) the shared one, so m_v = U^T (Z q_v) + b = [z_1.q_v, ..., z_R.q_v] U
      + b. It has no attention, and it is not invariant to the tokens' order.
  multiband=False ("w/o multiFM"): one modulation and a plain stack of MLP layers: h^(1) = m_v^(1) from sigma_1
      alone (Eqs. 6-7 with l = 1), h^(l) = ReLU(W^(l) h^(l-1) + b^(l)) for l = 2..L, y = f_out^(L)(h^(L)) + 0.5.
      It drops exactly bands 2..L (their frequency features and modulation maps) and the skip outputs of Eq. 9.

Shapes: images (B, C, H, W) in [-1, 1]; tokens (B, R, d); coordinates (N, din) shared by the batch or (B, N, din)
per item; outputs (B, N, dout) in [0, 1] (unclamped).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from inrkit.core.errors import InrkitError
from inrkit.fields.grid import Range, grid_points
from inrkit.models.classifier import Block


def patch_grid(size: int, patch: int) -> tuple[int, int]:
    """Patches along a side of `size` pixels and the zero padding before them: ceil(size / patch) patches, the
    padding ceil(size / patch) * patch - size split with the smaller half first."""
    count = -(-size // patch)
    return count, (count * patch - size) // 2


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, T, C * patch^2) patches in raster order, zero padding where patch does not divide."""
    _, _, h, w = images.shape
    (rows, top), (cols, left) = patch_grid(h, patch), patch_grid(w, patch)
    padded = F.pad(images, (left, cols * patch - w - left, top, rows * patch - h - top))
    return F.unfold(padded, patch, stride=patch).transpose(1, 2)


class TransformerEncoder(nn.Module):
    """Images (B, C, H, W) -> latent tokens (B, R, d) (Sec. 3.2; App. A: 6 blocks, 12 heads of 64, R = 256)."""

    def __init__(self, image_size: tuple[int, int], channels: int = 3, patch: int = 9, tokens: int = 256,
                 width: int = 768, depth: int = 6, heads: int = 12, latent_dim: int = 256):
        super().__init__()
        if not 1 <= patch <= min(image_size):
            raise InrkitError(f"a {patch}x{patch} patch cannot tile {image_size[0]}x{image_size[1]} images; "
                              f"choose a patch size from 1 to {min(image_size)}.")
        if width % heads:
            raise InrkitError(f"the encoder width {width} must be a multiple of its {heads} heads.")
        self.image_size, self.patch = tuple(image_size), patch
        rows, cols = patch_grid(image_size[0], patch)[0], patch_grid(image_size[1], patch)[0]
        self.embed = nn.Linear(channels * patch * patch, width)
        self.position = nn.Parameter(torch.randn(rows * cols, width))  # IPC's learned PE, N(0, 1)
        self.latent_tokens = nn.Parameter(torch.randn(tokens, width))  # IPC's weight tokens, N(0, 1)
        self.blocks = nn.ModuleList(Block(width, 4 * width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.to_latent = nn.Linear(width, latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.image_size:
            raise InrkitError(f"the encoder takes {self.image_size[0]}x{self.image_size[1]} images, got "
                              f"{images.shape[-2]}x{images.shape[-1]}.")
        x = self.embed(patchify(images, self.patch)) + self.position  # (B, T, width)
        x = torch.cat([x, self.latent_tokens.expand(x.shape[0], -1, -1)], dim=1)  # (B, T + R, width)
        for block in self.blocks:
            x = block(x)
        return self.to_latent(self.norm(x[:, -self.latent_tokens.shape[0]:]))  # (B, R, d)


def log_frequencies(sigma: float, count: int) -> torch.Tensor:
    """Eq. 2's w_j = sigma^(j / (count - 1)), j = 0..count-1: log-spaced from 1 to sigma (count 1: just 1)."""
    return torch.exp(torch.linspace(0.0, math.log(sigma), count)) if count > 1 else torch.ones(1)


class FrequencyFeatures(nn.Module):
    """h_F(v; sigma) = ReLU(W gamma_sigma(v) + b) (Eqs. 2-3): (..., din) in [0, 1] -> (..., width)."""

    def __init__(self, in_dim: int, features: int, width: int, sigma: float):
        super().__init__()
        if features % (2 * in_dim) or sigma < 1:
            raise InrkitError(f"frequency features need a size that is a multiple of 2 x {in_dim} and a bandwidth "
                              f"of at least 1, got {features} and {sigma}.")
        self.register_buffer("frequencies", log_frequencies(sigma, features // (2 * in_dim)), persistent=False)
        self.linear = nn.Linear(features, width)

    def gamma(self, coords: torch.Tensor) -> torch.Tensor:
        """Eq. 2: (..., din) -> (..., d_F), the cosines of every (axis, frequency) pair, then the sines."""
        phase = math.pi * (2 * coords[..., None] - 1) * self.frequencies  # (..., din, n)
        phase = phase.flatten(-2)
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return F.relu(self.linear(self.gamma(coords)))


class TokenAttention(nn.Module):
    """Selective token aggregation (Eq. 5): queries (B, N, d) attend to tokens (B, R, d) -> m_v (B, N, d)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise InrkitError(f"the decoder width {width} must be a multiple of its {heads} attention heads.")
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, width)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, d) -> (B, heads, N, d / heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def weights(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The attention of each query to each token (B, heads, N, R); it sums to 1 over the R tokens."""
        q, k = self.split(self.query(queries)), self.split(self.key(tokens))
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.query(queries)), self.split(self.key(tokens)), self.split(self.value(tokens))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d / heads), the same softmax as weights
        return self.out(out.transpose(1, 2).flatten(-2))


class PatternComposer(nn.Module):
    """IPC's instance pattern composer (the "w/o STA" ablation): the layer after q_v takes the weight Z^T U, so
    m_v = (q_v Z^T) U + b: queries (B, N, d), tokens (B, R, d) -> (B, N, d)."""

    def __init__(self, width: int, tokens: int):
        super().__init__()
        self.factor = nn.Parameter(torch.randn(tokens, width) / math.sqrt(tokens * width))  # U, IPC's init
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return (queries @ tokens.transpose(-1, -2)) @ self.factor + self.bias


class ModulationBand(nn.Module):
    """One band of multi-band modulation: m_v^(l) = ReLU(h_F(v; sigma_l) + W_m^(l) m_v + b_m^(l)) (Eqs. 6-7);
    coordinates (..., din) and m_v (B, N, d) -> (B, N, d)."""

    def __init__(self, in_dim: int, features: int, width: int, sigma: float):
        super().__init__()
        self.frequency = FrequencyFeatures(in_dim, features, width, sigma)
        self.modulation = nn.Linear(width, width)

    def forward(self, coords: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return F.relu(self.frequency(coords) + self.modulation(m))


class LocalityAwareDecoder(nn.Module):
    """The locality-aware INR decoder (Sec. 3.3): tokens (B, R, d) at coordinates (N, din) or (B, N, din) ->
    (B, N, dout); sigmas = (sigma_1, ..., sigma_L), largest first. See the module docstring for the equations
    and for what selective=False and multiband=False replace."""

    def __init__(self, in_dim: int = 2, out_dim: int = 3, width: int = 256, features: int = 256,
                 sigmas: tuple[float, ...] = (128.0, 32.0), sigma_q: float = 16.0, heads: int = 2,
                 tokens: int = 256, selective: bool = True, multiband: bool = True):
        super().__init__()
        if not sigmas:
            raise InrkitError("the decoder needs at least one modulation level (one bandwidth in --sigmas).")
        self.multiband = multiband
        self.query = FrequencyFeatures(in_dim, features, width, sigma_q)
        self.aggregate = TokenAttention(width, heads) if selective else PatternComposer(width, tokens)
        self.bands = nn.ModuleList(ModulationBand(in_dim, features, width, s)
                                   for s in (sigmas if multiband else sigmas[:1]))
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in sigmas[1:])  # W^(l), l = 2..L
        self.skips = nn.ModuleList(nn.Linear(width, out_dim) for _ in (sigmas[1:] if multiband else ()))
        self.head = nn.Linear(width, out_dim)  # f_out^(L); the skips are f_out^(1..L-1)

    def queries(self, tokens: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """q_v (Eq. 4) for every item: (B, N, d), shared coordinates computed once."""
        q = self.query(coords)
        return q.expand(tokens.shape[0], -1, -1) if coords.dim() == 2 else q

    def attention(self, tokens: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Each coordinate's attention to each token (B, heads, N, R) (the locality analysis of Sec. 4.3)."""
        if not isinstance(self.aggregate, TokenAttention):
            raise InrkitError("this GINR decoder has no selective token aggregation (selective=False), so no "
                              "attention to draw.")
        return self.aggregate.weights(self.queries(tokens, coords), tokens)

    def forward(self, tokens: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.compose(coords, self.aggregate(self.queries(tokens, coords), tokens))  # m_v (B, N, d), Eq. 5

    def compose(self, coords: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The modulation vectors m_v through the bands and the MLP to the output (Eqs. 6-9)."""
        h = self.bands[0](coords, m)  # h^(1) = m_v^(1)
        out = 0.5
        for l, layer in enumerate(self.layers, start=1):  # Eq. 8 (multiband) or a plain stack
            if self.multiband:
                out = out + self.skips[l - 1](h)  # f_out^(l)(h^(l)) of Eq. 9, l < L
                h = h + self.bands[l](coords, m)  # h~^(l+1) = m_v^(l+1) + h^(l)
            h = F.relu(layer(h))
        return out + self.head(h)  # Eq. 9: f_out^(L)(h^(L)) and the skips, plus IPC's output bias 0.5


class LocalityAwareINR(nn.Module):
    """Encoder and decoder together; `config` comes from ginr_config. encode: images (B, C, H, W) in [-1, 1] ->
    tokens (B, R, d); forward: tokens and coordinates -> (B, N, C) in [0, 1]."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        c = self.config
        self.resolution = tuple(c["resolution"])
        self.encoder = TransformerEncoder(self.resolution, c["channels"], c["patch"], c["tokens"], c["width"],
                                          c["depth"], c["heads"], c["dim"])
        self.decoder = LocalityAwareDecoder(2, c["channels"], c["dim"], c["features"], tuple(c["sigmas"]),
                                            c["sigma_q"], c["decoder_heads"], c["tokens"], c["selective"],
                                            c["multiband"])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward(self, tokens: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens, coords)

    @torch.no_grad()
    def render(self, tokens: torch.Tensor, shape: tuple[int, int] | None = None, ranges: list[Range] | None = None,
               chunk: int = 2**14) -> torch.Tensor:
        """Evaluate tokens (B, R, d) on a pixel-centre grid, `chunk` points at a time -> (B, H, W, C): the
        cross-attention of every point to R tokens is the large term, so memory follows the chunk."""
        shape = shape or self.resolution
        total = shape[0] * shape[1]
        parts = [self(tokens, grid_points(shape, ranges, a, min(a + chunk, total)).to(tokens.device))
                 for a in range(0, total, chunk)]
        return torch.cat(parts, dim=1).view(tokens.shape[0], *shape, -1)


def ginr_config(*, resolution, channels: int = 3, patch: int = 9, tokens: int = 256, width: int = 768,
                depth: int = 6, heads: int = 12, dim: int = 256, features: int = 256,
                sigmas=(128.0, 32.0), sigma_q: float = 16.0, decoder_heads: int = 2, selective: bool = True,
                multiband: bool = True) -> dict:
    """The full config (enough to rebuild the model), App. A's 178 x 178 setting by default: patch 9 (400
    patches), R = 256 tokens, a 6-block encoder of width 768 with 12 heads, decoder width d = d_F = 256, L = 2
    with (sigma_1, sigma_2, sigma_q) = (128, 32, 16) and 2 attention heads. resolution: an int or (H, W).
    The bandwidths are taken in the order given (Table 4 also trains (32, 128) and (128, 128))."""
    size = [int(resolution)] * 2 if isinstance(resolution, int) else [int(v) for v in resolution]
    sigmas = [float(s) for s in sigmas]
    if min(channels, tokens, width, depth, heads, dim, features, decoder_heads) < 1 or len(size) != 2:
        raise InrkitError("every GINR size (channels, tokens, widths, depth, heads) must be at least 1 and the "
                          "resolution must be H or HxW.")
    return dict(arch="ginr", resolution=size, channels=channels, patch=patch, tokens=tokens, width=width,
                depth=depth, heads=heads, dim=dim, features=features, sigmas=sigmas, sigma_q=float(sigma_q),
                decoder_heads=decoder_heads, selective=bool(selective), multiband=bool(multiband))
