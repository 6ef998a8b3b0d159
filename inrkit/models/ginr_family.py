"""The locality-aware generalizable INR family (Lee et al. 2023): the trained encoder + decoder (kind
`ginr-model`, written by `inrkit meta --arch ginr`), rebuilt through the registry and rendered through its one
interface: latent tokens (B, R, d) evaluated on any pixel-centre grid. Registered in
inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import Value, check_config
from inrkit.core.errors import InrkitError
from inrkit.fields.grid import Range
from inrkit.models.ginr import LocalityAwareINR

MODEL_KIND = "ginr-model"
MAX_CHUNK = 2**14  # points per evaluation chunk at most: the (B, heads, chunk, R) attention is the large term

SIZE = Value(int, 1, 2**14)
GINR = dict(arch=Value(str, choices=("ginr",)), resolution=Value(list, 2, 2, items=SIZE),
            channels=Value(int, 1, 4), patch=SIZE, tokens=SIZE, width=SIZE, depth=Value(int, 1, 1024), heads=SIZE,
            dim=SIZE, features=SIZE, sigmas=Value(list, 1, 64, items=Value(float, 1, 1e6)),
            sigma_q=Value(float, 1, 1e6), decoder_heads=SIZE, selective=Value(bool), multiband=Value(bool))


def parameter_count(config: dict) -> int:
    """Stored values of the model a config builds, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return sum(t.numel() for t in LocalityAwareINR(config).state_dict().values())


def check_ginr_config(config, held: int, path: str | Path) -> dict:
    """A GINR model config (types, ranges, the model's own checks) that builds exactly `held` stored values."""
    check_config(config, GINR, path, "GINR model config")
    try:
        expected = parameter_count(config)
    except InrkitError as err:
        raise InrkitError(f"{path} has a GINR model config its model refuses ({str(err).rstrip('.')}); the file is "
                          "damaged or foreign.") from None
    if expected != held:
        raise InrkitError(f"{path} has a GINR model config that needs {expected:,} stored values but the file holds "
                          f"{held:,}; the file is damaged or foreign.")
    return config


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> LocalityAwareINR:
    """A ginr-model artifact as its LocalityAwareINR, in eval mode on `device`."""
    if "model" not in art.config:
        raise InrkitError(f"{path} has no model config in its metadata; the file is damaged or foreign.")
    check_ginr_config(art.config["model"], sum(t.numel() for t in art.tensors.values()), path)
    return artifacts.load_state(LocalityAwareINR(art.config["model"]), art, path).to(device).eval()


@torch.no_grad()
def render_codes(net: LocalityAwareINR, tokens: torch.Tensor, shape: tuple[int, int],
                 ranges: list[Range] | None = None, chunk: int = MAX_CHUNK) -> torch.Tensor:
    """The render interface: tokens (B, R, d) on the (H, W) pixel-centre grid -> (B, H, W, C) in [0, 1]
    (unclamped), `chunk` points at a time; float32, also from a bf16 autocast."""
    return net.render(tokens, shape, ranges, min(chunk, MAX_CHUNK)).float()
