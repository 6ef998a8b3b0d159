"""StyleGAN2 residual discriminator (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN"), in the small configuration "config-e" that INR-GAN trains against (INR-GAN Sec. 4.1, App. A).

Layout, for a (B, C, R, R) image, R a power of two >= 8:
  fromRGB 1x1 conv -> one residual block per resolution R, R/2, ..., 8, each
      main: 3x3 conv, 3x3 conv with 2x down; skip: 1x1 conv with 2x down; out = (main + skip) / sqrt(2)
  -> epilogue at 4x4: minibatch stddev, 3x3 conv, dense, dense -> one logit per image (shape (B,)).
Downsampling blurs with the [1, 3, 3, 1] filter before a stride-2 convolution. Weights use the equalized
learning rate (stored N(0, 1), scaled by 1/sqrt(fan_in) at run time) and leaky ReLU(0.2) with gain sqrt(2),
as in StyleGAN2. Channels at resolution r are min(channel_base / r, channel_max): config-e's channel_base is
16384 (16 channels at 1024, 64 at 256, 512 from 32 down); config-f doubles it to 32768.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from inrkit.core.errors import InrkitError
from inrkit.models.macs import conv2d_macs, linear_macs

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


def discriminator_config(
    resolution: int = 256,  # input images are (B, in_channels, resolution, resolution)
    in_channels: int = 3,
    channel_base: int = 16384,  # config-e; 32768 is config-f
    channel_max: int = 512,
    mbstd_group: int = 4,  # minibatch-stddev group size (clipped to a divisor of the batch)
    mbstd_channels: int = 1,
) -> dict:
    """Resolve and check a discriminator configuration (JSON-able; rebuilds the model alone)."""
    if resolution < 8 or resolution & (resolution - 1):
        raise InrkitError(f"the discriminator needs a power-of-two resolution >= 8, got {resolution}.")
    for name, value in (("in_channels", in_channels), ("channel_base", channel_base),
                        ("channel_max", channel_max), ("mbstd_group", mbstd_group),
                        ("mbstd_channels", mbstd_channels)):
        if int(value) < 1:
            raise InrkitError(f"{name} must be a positive integer, got {value}.")
    return dict(resolution=int(resolution), in_channels=int(in_channels), channel_base=int(channel_base),
                channel_max=int(channel_max), mbstd_group=int(mbstd_group), mbstd_channels=int(mbstd_channels))


def channels_at(cfg: dict, res: int) -> int:
    return max(1, min(cfg["channel_base"] // res, cfg["channel_max"]))


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


class EqualConv2d(nn.Module):
    """Conv with equalized learning rate; down=True blurs ([1,3,3,1]) then strides by 2."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, activate: bool = True,
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.activate, self.down = 1.0 / math.sqrt(cin * kernel * kernel), activate, down
        self.kernel = kernel
        taps = torch.tensor(BLUR_TAPS)
        self.register_buffer("blur", (taps[:, None] * taps[None, :] / taps.sum() ** 2)[None, None],
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.scale
        if self.down:  # pad so that blur (4 taps) + stride-2 conv maps R to R/2
            pad = (len(BLUR_TAPS) - 2 + self.kernel - 1) // 2
            x = F.pad(x, [pad] * 4)
            x = F.conv2d(x, self.blur.to(x.dtype).expand(x.shape[1], 1, -1, -1), groups=x.shape[1])
            x = F.conv2d(x, weight.to(x.dtype), stride=2)
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=self.kernel // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).view(1, -1, 1, 1)
        return _lrelu(x) if self.activate else x


class EqualLinear(nn.Module):
    def __init__(self, cin: int, cout: int, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.activate = 1.0 / math.sqrt(cin), activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias)
        return _lrelu(x) if self.activate else x


class ResidualBlock(nn.Module):
    """StyleGAN2 'resnet' D block: r x r x cin -> r/2 x r/2 x cout."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqualConv2d(cin, cin, 3)
        self.conv1 = EqualConv2d(cin, cout, 3, down=True)
        self.skip = EqualConv2d(cin, cout, 1, bias=False, activate=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


def minibatch_stddev(x: torch.Tensor, group: int, channels: int) -> torch.Tensor:
    """Append the std over groups of samples, averaged over features and pixels (ProGAN/StyleGAN2).
    The group is the largest divisor of the batch not above `group`, so any batch size works."""
    n, c, h, w = x.shape
    g = math.gcd(group, n)
    y = x.float().reshape(g, n // g, channels, c // channels, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (n/g, channels)
    y = y.reshape(1, n // g, channels, 1, 1).expand(g, -1, -1, h, w).reshape(n, channels, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    """image (B, C, R, R) in [-1, 1] -> logit (B,)."""

    def __init__(self, config: dict):
        super().__init__()
        unknown = sorted(set(config) - set(inspect.signature(discriminator_config).parameters))
        if unknown:
            raise InrkitError(f"unknown discriminator config keys: {', '.join(unknown)}.")
        self.config = discriminator_config(**config)
        cfg, res = self.config, self.config["resolution"]
        if channels_at(cfg, 4) % cfg["mbstd_channels"]:
            raise InrkitError("mbstd_channels must divide the 4x4 channel count.")
        self.from_rgb = EqualConv2d(cfg["in_channels"], channels_at(cfg, res), 1)
        self.blocks = nn.ModuleList(ResidualBlock(channels_at(cfg, r), channels_at(cfg, r // 2))
                                    for r in self.block_resolutions())
        c4 = channels_at(cfg, 4)
        self.conv = EqualConv2d(c4 + cfg["mbstd_channels"], c4, 3)
        self.fc = EqualLinear(c4 * 16, c4)
        self.out = EqualLinear(c4, 1, activate=False)

    def block_resolutions(self) -> list[int]:
        res = self.config["resolution"]
        return [res >> i for i in range(int(math.log2(res)) - 2)]  # R, R/2, ..., 8

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.config["mbstd_group"], self.config["mbstd_channels"])
        x = self.fc(self.conv(x).flatten(1))
        return self.out(x).squeeze(1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_image(self) -> int:
        """Convolutions (blur included, as depthwise) and dense layers, in closed form."""
        cfg = self.config
        macs = conv2d_macs(cfg["in_channels"], channels_at(cfg, cfg["resolution"]), 1, *[cfg["resolution"]] * 2)
        for r in self.block_resolutions():
            c, c2 = channels_at(cfg, r), channels_at(cfg, r // 2)
            macs += conv2d_macs(c, c, 3, r, r) + conv2d_macs(c, c2, 3, r // 2, r // 2)
            macs += conv2d_macs(c, c2, 1, r // 2, r // 2)
            macs += conv2d_macs(c, c, 4, r + 1, r + 1, groups=c) + conv2d_macs(c, c, 4, r - 1, r - 1, groups=c)
        c4 = channels_at(cfg, 4)
        macs += conv2d_macs(c4 + cfg["mbstd_channels"], c4, 3, 4, 4)
        return macs + linear_macs(c4 * 16, c4) + linear_macs(c4, 1)
