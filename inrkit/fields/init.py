"""The one initialisation of the Leaky-ReLU fields (PE MLP, PE + CE, Levels-of-Experts): LoE supp. A's
"uniform distribution variant of Kaiming initialization" with zero biases, for the Leaky ReLU 0.2 the
networks use (supp. A, B, C). SIREN keeps its own scheme (supp. C: "we follow the initialization scheme in [46]").
"""

from __future__ import annotations

import math

import torch
from torch import nn

SLOPE = 0.2  # Leaky ReLU negative slope between layers (supp. A)


def uniform_kaiming_(weight: torch.Tensor, fan_in: int) -> torch.Tensor:
    """weight ~ U(-bound, bound), bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 0.2^2)) (He et al. 2015).

    `fan_in` is given, not read from the shape: an LoE weight (N, in, out) is N candidate layers of fan-in
    `in`. Written as torch's kaiming_uniform_ computes it, so an nn.Linear gets the same numbers as there.
    """
    std = nn.init.calculate_gain("leaky_relu", SLOPE) / math.sqrt(fan_in)
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def uniform_kaiming_linear_(layer: nn.Linear) -> nn.Linear:
    """An nn.Linear with uniform Kaiming weights and zero biases (supp. A)."""
    uniform_kaiming_(layer.weight, layer.in_features)
    nn.init.zeros_(layer.bias)
    return layer
