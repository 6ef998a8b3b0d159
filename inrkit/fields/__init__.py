"""Coordinate fields: grids, encodings, SIREN, the Fourier-feature MLP (with a coordinate embedding: PE + CE) and
Levels-of-Experts."""

from __future__ import annotations

from inrkit.core.errors import InrkitError
from inrkit.fields.base import Field
from inrkit.fields.grid import make_grid

ARCHS = ("siren", "pe", "pe-ce", "loe")


def build_field(config: dict) -> Field:
    """Rebuild a field from the config dict stored in its artifact."""
    cfg = dict(config)
    arch = cfg.pop("arch", None)
    if arch == "siren":
        from inrkit.fields.siren import Siren

        return Siren(**cfg)
    if arch == "pe":
        from inrkit.fields.mlp import FourierMLP

        return FourierMLP(**cfg)
    if arch == "pe-ce":
        from inrkit.fields.pe_ce import PECEField

        return PECEField(**cfg)
    if arch == "loe":
        from inrkit.fields.loe import LoEField

        return LoEField.from_config(config)
    raise InrkitError(f"unknown field architecture {arch!r}; expected one of {', '.join(ARCHS)}.")


__all__ = ["Field", "build_field", "make_grid", "ARCHS"]
