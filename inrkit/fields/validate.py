"""The check a field artifact's config passes before any tensor is allocated (inrkit.fields.family.build).

A config comes from a file, so it may hold anything: each value must be of the type and within the range its
constructor accepts (the bounds are far above any real field), and the parameter count the config implies must
be the one the file holds, so a crafted config cannot ask for terabytes. The counts are the state dicts'
closed forms (tests/test_reliability.py checks them against the modules).
"""

from __future__ import annotations

import math
from pathlib import Path

from inrkit.core.checks import Value, check_config, fits
from inrkit.core.errors import InrkitError
from inrkit.fields.loe import ARRANGEMENTS, BLENDS, CONSTANT_INPUT_DIM

MAX_SIDE = 2**16  # pixels (or frames) per axis of the signal a field renders by default
MAX_POINTS = 2**30  # pixels times frames of that signal
SEED = Value(int, -(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes
_COMMON = dict(arch=Value(str), in_dim=Value(int, 1, 4), out_dim=Value(int, 1, 64), width=Value(int, 1, 2**14))
WIDTHS = Value(list, 0, 1023, items=Value(int, 1, 2**14), optional=True)  # per-layer hidden widths (depth - 1)
RULES = {
    "siren": dict(_COMMON, depth=Value(int, 2, 1024), w0_first=Value(float, 1e-6, 1e6),
                  w0_hidden=Value(float, 1e-6, 1e6)),
    "pe": dict(_COMMON, depth=Value(int, 1, 1024), encoding=Value(str, choices=("pe", "rff")),
               frequencies=Value(int, 0, 32), rff_features=Value(int, 1, 2**16), rff_sigma=Value(float, 0, 1e6),
               seed=SEED, widths=WIDTHS),
    "pe-ce": dict(_COMMON, depth=Value(int, 1, 1024), frequencies=Value(int, 0, 32), widths=WIDTHS,
                  ce_channels=Value(int, 1, 2**14), ce_size=Value(int, 2, 2**14)),
    "loe": dict(_COMMON, depth=Value(int, 1, 1024), tile=Value(int, 2, 64), blend=Value(str, choices=BLENDS),
                arrangement=Value(str, choices=ARRANGEMENTS), resolution=Value(int, 1, 2**20),
                frequencies=Value(int, 0, 32), seed=SEED, loe_layers=Value(int, 0, 1023, optional=True),
                affines=Value(list, 0, 1023, optional=True), widths=WIDTHS,
                tiles=Value(list, 0, 1023, items=Value(int, 2, 64), optional=True)),
}
SIGNAL = dict(source=Value(str, optional=True), shape=Value(list, 1, 3, items=Value(int, 1, MAX_SIDE)),
              channels=Value(int, 1, 64, optional=True), video=Value(bool, optional=True))


def check_field_artifact(config: dict, tensor_numel: int, path: str | Path, need_signal: bool = False) -> None:
    """The artifact config {field, signal} can rebuild a field of exactly `tensor_numel` stored elements (and,
    with `need_signal`, says which signal it renders by default)."""
    field = config.get("field")
    if not isinstance(field, dict):
        raise InrkitError(f"{path} has no field config in its metadata; the file is damaged or foreign.")
    arch = field.get("arch")
    if not isinstance(arch, str) or arch not in RULES:
        raise InrkitError(f"{path} has a field config of an unknown architecture; the file is damaged or foreign.")
    check_config(field, RULES[arch], path, "field config")
    if field.get("widths") is not None and len(field["widths"]) != field["depth"] - 1:
        raise InrkitError(f"{path} has a field config whose per-layer widths are not depth - 1 = {field['depth'] - 1} "
                          "values; the file is damaged or foreign.")
    if arch == "loe":
        _check_loe(field, path)
    if need_signal and "signal" not in config:
        raise InrkitError(f"{path} records no signal to render; the file is damaged or foreign.")
    if "signal" in config:
        signal = check_config(config["signal"], SIGNAL, path, "signal config")
        if len(signal["shape"]) != field["in_dim"] or signal.get("video", len(signal["shape"]) == 3) != (
                len(signal["shape"]) == 3):
            raise InrkitError(f"{path} has a signal shape that does not match its field's {field['in_dim']} input "
                              "axes; the file is damaged or foreign.")
        if math.prod(signal["shape"]) > MAX_POINTS:
            raise InrkitError(f"{path} has a signal of {math.prod(signal['shape']):,} points, more than a field "
                              "renders by default; the file is damaged or foreign.")
    expected = state_numel(field)
    if expected != tensor_numel:
        raise InrkitError(f"{path} has a field config that needs {expected:,} stored values but the file holds "
                          f"{tensor_numel:,}; the file is damaged or foreign.")


def _check_loe(cfg: dict, path) -> None:
    """loe_layers within the depth, and one (A (d, d), b (d,)) grid transform of finite numbers per LoE layer."""
    layers = cfg["depth"] - 1 if cfg.get("loe_layers") is None else cfg["loe_layers"]
    if layers > cfg["depth"] - 1:
        raise InrkitError(f"{path} has an LoE config with more LoE layers than its depth allows; the file is "
                          "damaged or foreign.")
    if cfg.get("tiles") is not None and len(cfg["tiles"]) != layers:
        raise InrkitError(f"{path} has an LoE config whose per-layer tiles are not {layers} values; the file is "
                          "damaged or foreign.")
    if cfg["arrangement"] == "explicit" and cfg.get("affines") is None:
        raise InrkitError(f"{path} has an explicit LoE arrangement without its grid transforms; the file is "
                          "damaged or foreign.")
    affines, d = cfg.get("affines"), cfg["in_dim"]
    if affines is None:
        return
    row = Value(list, d, d, items=Value(float))
    pair_ok = [isinstance(p, list) and len(p) == 2 and isinstance(p[0], list) and len(p[0]) == d
               and all(fits(row, r) for r in p[0]) and fits(row, p[1]) for p in affines]
    if len(affines) != layers or not all(pair_ok):
        raise InrkitError(f"{path} has an LoE config whose grid transforms are not {layers} pairs of a {d}x{d} "
                          f"matrix and a {d}-vector of numbers; the file is damaged or foreign.")


def _mlp_numel(dims: list[int]) -> int:
    """Weights and biases of nn.Linear layers dims[0] -> dims[1] -> ..."""
    return sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:], strict=True))


def state_numel(cfg: dict) -> int:
    """Elements of the state dict of the field `cfg` builds (parameters and persistent buffers)."""
    d, w, depth, out = cfg["in_dim"], cfg["width"], cfg["depth"], cfg["out_dim"]
    hidden = cfg.get("widths") or [w] * (depth - 1)  # checked to be depth - 1 values
    if cfg["arch"] == "siren":
        return _mlp_numel([d] + [w] * (depth - 1)) + (w + 1) * out
    if cfg["arch"] == "pe":
        rff = cfg.get("encoding", "pe") == "rff"
        encoded = 2 * cfg["rff_features"] if rff else d * (2 * cfg["frequencies"] + 1)
        return _mlp_numel([encoded] + hidden + [out]) + (cfg["rff_features"] * d if rff else 0)
    if cfg["arch"] == "pe-ce":
        encoded = d * (2 * cfg["frequencies"] + 1) + cfg["ce_channels"]
        return _mlp_numel([encoded] + hidden + [out]) + cfg["ce_channels"] * cfg["ce_size"] ** d
    encoded = d * (2 * cfg["frequencies"] + 1) if cfg["frequencies"] > 0 else CONSTANT_INPUT_DIM
    widths = [encoded] + hidden + [out]
    layers = depth - 1 if cfg.get("loe_layers") is None else cfg["loe_layers"]
    tiles = cfg.get("tiles") or [cfg["tile"]] * layers
    loe = sum(t ** d * a * b + b + d * d + d for t, a, b in zip(tiles, widths[:layers], widths[1:layers + 1],
                                                                 strict=True))  # weight, bias, A, b
    return loe + _mlp_numel(widths[layers:])
