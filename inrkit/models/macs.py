"""Multiply-accumulate (MAC) counting: closed-form helpers and a measured cross-check.

What is counted (as the INR-GAN paper counts, Sec. 4.1 "MACs [29, 16]"): multiply-accumulates of matrix
products and convolutions only. Element-wise work (activations, sigmoid, sin/cos, the W_s * sigma(AB)
product, upsampling copies) is not counted. The models compute their counts in closed form from their
configs (so a 2-billion-parameter baseline can be counted without being built); `measured_macs` runs a
model under torch's FlopCounterMode and is what the tests compare the closed forms against.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def linear_macs(in_features: int, out_features: int, rows: int = 1) -> int:
    """MACs of `rows` vector-matrix products (in_features x out_features)."""
    return rows * in_features * out_features


def conv2d_macs(in_channels: int, out_channels: int, kernel: int, out_h: int, out_w: int, groups: int = 1) -> int:
    """MACs of one 2-D convolution producing an (out_channels, out_h, out_w) map."""
    return out_channels * (in_channels // groups) * kernel * kernel * out_h * out_w


def _baddbmm_inplace_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode knows baddbmm but not its in-place form, which the INR layers use to accumulate.
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[-1]


def measured_macs(fn: Callable[[], object]) -> int:
    """MACs of matmuls and convolutions executed by fn(), measured with torch's FlopCounterMode."""
    mapping = {torch.ops.aten.baddbmm_: _baddbmm_inplace_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops() // 2
