"""Denoisers for functa latents: an ADM-style UNet (Dhariwal & Nichol 2021) on s x s x c spatial functa (spatial
functa App. C, Tables 6-7) and a residual MLP for flat (s = 1) functa (App. B.1, after Dupont et al. 2022).

Both map (x (B, s, s, c), t int64 (B,), labels int64 (B,) | None) -> (B, s, s, c). The UNet follows ADM: a
sinusoidal timestep embedding through a 2-layer SiLU MLP (4 x model channels), a class embedding (classes + 1 rows,
the last the dummy label of classifier-free guidance) added to it, residual blocks (GroupNorm, SiLU, 3x3 conv, the
embedding as scale-shift of the second norm, dropout, zero-initialised last conv), multi-head self-attention at the
chosen resolutions (sides of the feature map), stride-2 convolutions down and nearest + conv up, skip connections
concatenated. Written here (no dependency): the model is small and its config must live in the artifact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def unet_config(*, latent, classes: int = 0, arch: str = "unet", channels: int = 64, res_blocks: int = 2,
                channel_mult=(1, 2), attention=(4,), heads: int = 4, dropout: float = 0.0,
                mlp_width: int = 512, mlp_blocks: int = 2) -> dict:
    """The denoiser's config as stored in the artifact (latent is [s, s, c])."""
    return dict(latent=[int(v) for v in latent], classes=int(classes), arch=arch, channels=int(channels),
                res_blocks=int(res_blocks), channel_mult=[int(v) for v in channel_mult],
                attention=[int(v) for v in attention], heads=int(heads), dropout=float(dropout),
                mlp_width=int(mlp_width), mlp_blocks=int(mlp_blocks))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """ADM's sinusoidal embedding: t (B,) -> (B, dim) [cos | sin] at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _groups(ch: int) -> int:
    """GroupNorm groups: ADM's 32, or the most that divide ch with at least 2 channels each."""
    return max(g for g in range(1, 33) if ch % g == 0 and ch // g >= 2) if ch > 1 else 1


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Embedding(nn.Module):
    """t (B,), labels (B,) | None -> (B, dim): sinusoid -> Linear -> SiLU -> Linear, plus a class embedding."""

    def __init__(self, base: int, dim: int, classes: int):
        super().__init__()
        self.base = base
        self.mlp = nn.Sequential(nn.Linear(base, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(classes + 1, dim) if classes else None

    def forward(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.mlp(timestep_embedding(t, self.base))
        if self.label is not None:
            if labels is None:
                labels = torch.full_like(t, self.label.num_embeddings - 1)
            emb = emb + self.label(labels)
        return emb


class ResBlock(nn.Module):
    """(B, C_in, h, w), emb (B, E) -> (B, C_out, h, w); the embedding scales and shifts the second norm."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.norm2, self.drop = nn.GroupNorm(_groups(cout), cout), nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class Attention(nn.Module):
    """Multi-head self-attention over the h x w positions: (B, C, h, w) -> (B, C, h, w), residual."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads, self.norm = heads, nn.GroupNorm(_groups(ch), ch)
        self.qkv, self.proj = nn.Conv1d(ch, 3 * ch, 1), zero_init(nn.Conv1d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x).reshape(b, c, h * w)).reshape(b, 3, self.heads, c // self.heads, h * w) \
            .permute(1, 0, 2, 4, 3).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, hw, C/heads)
        return x + self.proj(out.permute(0, 1, 3, 2).reshape(b, c, h * w)).reshape(b, c, h, w)


class Level(nn.Module):
    """One resolution's blocks: ResBlock (+ Attention) each; (B, C, h, w), emb -> (B, C', h, w)."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float, attend: bool, heads: int):
        super().__init__()
        self.res, self.attn = ResBlock(cin, cout, emb, dropout), Attention(cout, heads) if attend else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    """ADM UNet on latents (B, s, s, c) (channels last, as functasets hold them) -> (B, s, s, c)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        s, _, c = config["latent"]
        ch, mult, emb = config["channels"], config["channel_mult"], 4 * config["channels"]
        self.embed = Embedding(ch, emb, config["classes"])
        self.inp = nn.Conv2d(c, ch, 3, padding=1)
        self.down, self.up, widths, side, cur = nn.ModuleList(), nn.ModuleList(), [ch], s, ch
        for i, m in enumerate(mult):
            for _ in range(config["res_blocks"]):
                self.down.append(self._level(cur, m * ch, side))
                cur = m * ch
                widths.append(cur)
            if i + 1 < len(mult):
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                widths.append(cur)
                side //= 2
        self.mid = nn.ModuleList([self._level(cur, cur, side, attend=True), self._level(cur, cur, side)])
        for i, m in reversed(list(enumerate(mult))):
            for j in range(config["res_blocks"] + 1):
                self.up.append(self._level(cur + widths.pop(), m * ch, side))
                cur = m * ch
                if i > 0 and j == config["res_blocks"]:
                    self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                 nn.Conv2d(cur, cur, 3, padding=1)))
                    side *= 2
        self.out = nn.Sequential(nn.GroupNorm(_groups(cur), cur), nn.SiLU(), zero_init(nn.Conv2d(cur, c, 3, padding=1)))

    def _level(self, cin: int, cout: int, side: int, attend: bool | None = None) -> Level:
        attend = side in self.config["attention"] if attend is None else attend
        return Level(cin, cout, 4 * self.config["channels"], self.config["dropout"], attend, self.config["heads"])

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, labels)
        h = self.inp(x.permute(0, 3, 1, 2))
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Level) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(layer, Level) else layer(h)
        return self.out(h).permute(0, 2, 3, 1)


class ResidualMLP(nn.Module):
    """App. B.1's denoiser for flat functa: (B, 1, 1, c) (or any (B, s, s, c), flattened) -> the same shape.
    Blocks of LayerNorm -> SiLU -> Linear (+ embedding) -> SiLU -> Dropout -> Linear (zero-init), residual."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        d, width = math.prod(config["latent"]), config["mlp_width"]
        self.embed = Embedding(width, width, config["classes"])
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            norm=nn.LayerNorm(width), fc1=nn.Linear(width, width), emb=nn.Linear(width, width),
            drop=nn.Dropout(config["dropout"]), fc2=zero_init(nn.Linear(width, width))))
            for _ in range(config["mlp_blocks"]))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), zero_init(nn.Linear(width, d)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb, h = self.embed(t, labels), self.inp(x.flatten(1))
        for b in self.blocks:
            u = b["fc1"](F.silu(b["norm"](h))) + b["emb"](F.silu(emb))
            h = h + b["fc2"](b["drop"](F.silu(u)))
        return self.out(h).reshape(x.shape)


def build_denoiser(config: dict) -> nn.Module:
    """The network a config names: arch unet (spatial) or mlp (flat, App. B.1)."""
    return (ResidualMLP if config["arch"] == "mlp" else UNet)(config)
