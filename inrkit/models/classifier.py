"""Classifiers on functa latents (spatial functa, App. C "Classification", Table 5; flat functa App. B.1).

`transformer`: the vanilla pre-LN Transformer with absolute positional encodings; each token is the c-dim latent
feature at one spatial index, so the sequence length is s^2 (a flat functa is one token). The latents are first
multiplied by a scalar normalisation factor (`input_scale`, Table 5's "normalization scale"), embedded linearly to
`width` and summed with a learned positional embedding (one vector per cell, in row-major order). After the blocks,
a final LayerNorm and the mean over tokens pool the sequence (the paper does not say how it pools; mean pooling
is the choice here, as in big_vision's ViT `gap` head), then dropout (the only dropout, "applied once just before
the final linear layer") and the linear map to the logits.
`mlp` (App. B.1, Dupont et al.'s classifier): the flattened latent through `depth` hidden layers of `width` with
SiLU and dropout, then the logits.

Shapes: latents (B, s, s, c) float -> logits (B, classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inrkit.core.errors import InrkitError

ARCHS = ("transformer", "mlp")


def classifier_config(*, latent: list[int], classes: int, arch: str = "transformer", width: int = 128,
                      ffw: int | None = None, depth: int = 12, heads: int = 16, dropout: float = 0.1,
                      input_scale: float = 0.08, positional: bool = True) -> dict:
    """The full config (enough to rebuild the model); checks the numbers fit together."""
    s, s2, c = (int(v) for v in latent)
    if s != s2 or min(s, c, classes, width, depth) < 1:
        raise InrkitError(f"a classifier needs a square latent, classes, width and depth of at least 1, got latent "
                          f"{latent}, {classes} classes, width {width}, depth {depth}.")
    if arch not in ARCHS:
        raise InrkitError(f"unknown classifier --arch {arch!r}; choose {' or '.join(ARCHS)}.")
    if arch == "transformer" and (heads < 1 or width % heads):
        raise InrkitError(f"--width {width} must be a multiple of --heads {heads}.")
    if not 0 <= dropout < 1:
        raise InrkitError(f"--dropout must be in [0, 1), got {dropout}.")
    return dict(arch=arch, latent=[s, s, c], classes=classes, width=width, ffw=ffw or 2 * width, depth=depth,
                heads=heads, dropout=dropout, input_scale=input_scale, positional=positional)


class Block(nn.Module):
    """Pre-LN Transformer block: x + MHA(LN(x)), then x + MLP(LN(x)) with GELU. (B, T, D) -> (B, T, D)."""

    def __init__(self, width: int, ffw: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, ffw), nn.Linear(ffw, width)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, D / heads)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class FunctaClassifier(nn.Module):
    """latents (B, s, s, c) -> logits (B, classes); see the module docstring for the two architectures."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        s, _, c = config["latent"]
        width, classes = config["width"], config["classes"]
        self.dropout = nn.Dropout(config["dropout"])
        if config["arch"] == "mlp":
            sizes = [s * s * c] + [width] * config["depth"]
            self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        else:
            self.embed = nn.Linear(c, width)
            self.position = nn.Parameter(torch.randn(s * s, width) * 0.02)
            self.blocks = nn.ModuleList(Block(width, config["ffw"], config["heads"]) for _ in range(config["depth"]))
            self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def features(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, s, s, c) -> pooled features (B, width), before the dropout and the logits."""
        x = latents * self.config["input_scale"]
        if self.config["arch"] == "mlp":
            x = x.flatten(1)
            for layer in self.hidden:
                x = self.dropout(F.silu(layer(x)))
            return x
        x = self.embed(x.flatten(1, 2))  # tokens in row-major order of the latent grid
        if self.config["positional"]:
            x = x + self.position
        for block in self.blocks:
            x = block(x)
        return self.norm(x).mean(dim=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        features = self.features(latents)
        return self.head(features if self.config["arch"] == "mlp" else self.dropout(features))

    def decay_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: weight decay on the linear layers' weight matrices only, not on biases, LayerNorms or
        the positional embedding (the usual ViT practice; the paper does not say)."""
        decay = [m.weight for m in self.modules() if isinstance(m, nn.Linear)]
        ids = {id(p) for p in decay}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [dict(params=decay, weight_decay=weight_decay), dict(params=rest, weight_decay=0.0)]
