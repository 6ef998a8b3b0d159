"""The Transformer denoiser over GINR latent tokens (Lee et al. 2023, Sec. 4.4 and App. A.3).

The tokens of a locality-aware generalizable INR have no 2-D grid, so no UNet: "a vanilla Transformer with a simple
stack of self-attentions" (App. A.3; the paper's is 24 blocks of width 1024 with 16 heads, 458M parameters, in
recipes/diffusion-ginr.json). x (B, R, d) standardised tokens, t int64 (B,), labels int64 (B,) | None ->
(B, R, d), the x0 prediction (or epsilon; the parameterisation is the Denoiser wrapper's, inrkit.models.diffusion).

Layout: each token embedded by one linear map d -> width, plus a learned positional embedding per token: the
encoder's R learned query tokens give token k a fixed role, and the per-token standardisation (App. A.3) gives it
its own statistics, so the denoiser must know which token is which (without the positional embedding the network
is permutation-equivariant over tokens; with it, permuting the tokens together with their positional embeddings
permutes the output; tests/test_token_diffusion.py checks both). Pre-LN blocks (LN-MHSA, LN-MLP 4x GELU, as the
GINR encoder's, inrkit.models.classifier.Block).

Conditioning (not stated in the paper; our choice): the timestep (ADM's sinusoid through a 2-layer SiLU MLP) and
the class embedding (classes + 1 rows, the last the dummy label of classifier-free guidance) are summed into one
vector c that modulates every LayerNorm by adaLN-Zero (DiT, Peebles & Xie 2023): scale, shift and a residual
gate per block from a zero-initialised linear map of c, so each block starts as the identity and the output
layer starts at zero (the mean of the standardised tokens under x0 prediction). DiT found adaLN-Zero better
than adding the condition as extra tokens (in-context conditioning) at the same compute, and it keeps the
sequence at exactly R tokens, so the positional embedding indexes the latent tokens only.
"""

from __future__ import annotations

import torch
from torch import nn

from inrkit.models.classifier import Block
from inrkit.models.unet import Embedding, zero_init


def transformer_config(*, latent, classes: int = 0, width: int = 128, depth: int = 4, heads: int = 4,
                       dropout: float = 0.0) -> dict:
    """The denoiser's config as stored in the artifact (latent is [R, d])."""
    return dict(latent=[int(v) for v in latent], classes=int(classes), arch="transformer", width=int(width),
                depth=int(depth), heads=int(heads), dropout=float(dropout))


class AdaLNBlock(Block):
    """A pre-LN block whose LayerNorms are modulated by the condition c (adaLN-Zero): x (B, R, W), c (B, W) ->
    (B, R, W); x + g1 MHA(LN(x) (1 + s1) + b1), then x + g2 MLP(LN(x) (1 + s2) + b2), (s, b, g) linear in c."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__(width, 4 * width, heads)
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(width, 6 * width)))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s1, b1, g1, s2, b2, g2 = self.modulation(c)[:, None].chunk(6, dim=-1)
        x = x + g1 * self.drop(self.attention(self.norm1(x) * (1 + s1) + b1))
        h = self.norm2(x) * (1 + s2) + b2
        return x + g2 * self.drop(self.fc2(nn.functional.gelu(self.fc1(h))))


class TokenTransformer(nn.Module):
    """(x (B, R, d), t (B,), labels (B,) | None) -> (B, R, d); `config` from transformer_config."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        (tokens, dim), width = config["latent"], config["width"]
        if width % config["heads"]:
            raise ValueError(f"width {width} does not split into {config['heads']} heads")
        self.embed = Embedding(width, width, config["classes"])
        self.inp = nn.Linear(dim, width)
        self.position = nn.Parameter(0.02 * torch.randn(tokens, width))
        self.blocks = nn.ModuleList(AdaLNBlock(width, config["heads"], config["dropout"])
                                    for _ in range(config["depth"]))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(width, 2 * width)))
        self.out = zero_init(nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c = self.embed(t, labels)
        h = self.inp(x) + self.position
        for block in self.blocks:
            h = block(h, c)
        scale, shift = self.modulation(c)[:, None].chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)
