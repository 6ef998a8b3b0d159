"""PE + CE (LoE Table 1 and 2): the learnable coordinate embedding, linear inside [0, 1] and clamped outside, the
field around it, `fit --arch pe-ce` and the per-layer options' refusals."""

from __future__ import annotations

import itertools
import json
import os

import fuzz
import pytest
import torch

from inrkit.core import artifacts
from inrkit.fields import build_field
from inrkit.fields.grid import make_grid
from inrkit.fields.pe_ce import CoordinateEmbedding, PECEField
from inrkit.fields.validate import state_numel


def reference_lerp(grid: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """grid (C, n, ..., n) with samples at i / (n - 1) per axis, read at one point p (dim,): clamp p to [0, 1],
    then the product of per-axis hat weights over the cell's 2^dim corners."""
    n, dim = grid.shape[1], p.shape[0]
    u = p.clamp(0, 1) * (n - 1)
    low = u.floor().clamp(max=n - 2).long()
    frac = u - low
    out = torch.zeros(grid.shape[0], dtype=grid.dtype)
    for corner in itertools.product((0, 1), repeat=dim):
        w = torch.prod(torch.stack([frac[a] if c else 1 - frac[a] for a, c in enumerate(corner)]))
        out += w * grid[(slice(None), *[low[a] + c for a, c in enumerate(corner)])]
    return out


@pytest.mark.parametrize("dim", [2, 3])
def test_embedding_is_linear_inside_and_clamped_outside(dim):
    torch.manual_seed(0)
    emb = CoordinateEmbedding(dim, channels=3, size=5).double()
    with torch.no_grad():
        emb.grid.normal_()
    coords = torch.rand(200, dim, dtype=torch.float64) * 1.6 - 0.3  # a fifth of each axis lies outside [0, 1]
    coords[0] = 0.0
    coords[1] = 1.0
    coords[2] = torch.tensor([0.25, 0.75, 0.5][:dim], dtype=torch.float64)  # on samples: their values exactly
    out = emb(coords)
    assert out.shape == (200, 3)
    ref = torch.stack([reference_lerp(emb.grid[0], p) for p in coords])
    torch.testing.assert_close(out, ref)
    corner = (slice(None), *[0] * dim)
    torch.testing.assert_close(out[0], emb.grid[0][corner])
    torch.testing.assert_close(emb(torch.full((1, dim), -5.0, dtype=torch.float64))[0], emb.grid[0][corner])
    assert emb(coords.reshape(10, 20, dim)).shape == (10, 20, 3)


def test_embedding_axis_order_follows_the_coordinates():
    """Coordinate 0 (y, or t) walks the embedding's first grid axis, as the field's tensors are laid out."""
    emb = CoordinateEmbedding(2, channels=1, size=3)
    with torch.no_grad():
        emb.grid.zero_()
        emb.grid[0, 0, 2, 0] = 1.0  # y = 1, x = 0
    assert emb(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)
    assert emb(torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.0)


def test_field_counts_config_round_trip_and_gradients():
    torch.manual_seed(0)
    field = PECEField(in_dim=2, out_dim=3, depth=4, widths=[16, 12, 8], frequencies=3, ce_channels=4, ce_size=8)
    assert field.linears[0].in_features == 2 * 7 + 4  # [gamma(p), CE(p)]
    config = json.loads(json.dumps(field.config))
    assert config["arch"] == "pe-ce" and state_numel(config) == sum(t.numel() for t in field.state_dict().values())
    assert field.macs_per_sample() == 18 * 16 + 16 * 12 + 12 * 8 + 8 * 3  # linear layers, as the paper counts
    rebuilt = build_field(config)
    rebuilt.load_state_dict(field.state_dict())
    coords = torch.rand(50, 2) * 1.4 - 0.2
    assert torch.equal(rebuilt(coords), field(coords))
    field(coords).square().sum().backward()
    assert field.embedding.grid.grad.abs().sum() > 0  # zero at the start, learned through the first layer
    assert torch.equal(field.embedding.grid.detach(), torch.zeros_like(field.embedding.grid))


def test_paper_counts():
    """Supp. C's 64 x 64^3 video embedding with 6 layers of 256 is Table 2's 17.1M parameters, 0.29M MACs."""
    config = dict(arch="pe-ce", in_dim=3, out_dim=3, width=256, depth=6, frequencies=9, ce_channels=64, ce_size=64)
    assert round(state_numel(config) / 1e5) == 171
    assert round(PECEField(**{k: v for k, v in config.items() if k != "arch"}).macs_per_sample() / 1e4) == 29


def test_fit_pe_ce_renders_zoomed_out(tmp_path):
    out = tmp_path / "f.safetensors"
    code, err = fuzz.run_cli("fit", "builtin:camera", "--arch", "pe-ce", "--size", "16", "--depth", "3",
                             "--width", "8", "--frequencies", "2", "--ce-channels", "4", "--ce-size", "8",
                             "--steps", "20", "--betas", "0.9,0.999", "--device", "cpu", "--out", str(out))
    assert code == 0, err
    art = artifacts.read(out, kind="field")
    assert art.config["field"]["ce_size"] == 8 and art.options["betas"] == "0.9,0.999"
    assert art.metrics["params"] == 4 * 8 * 8 + (10 + 4 + 1) * 8 + 9 * 8 + 9 * 1
    field = build_field(art.config["field"])
    field.load_state_dict(art.tensors)
    wide = field(make_grid((40, 40), [(-0.5, 1.5), (-0.5, 1.5)]))
    assert torch.isfinite(wide).all()


def test_default_embedding_is_the_papers_per_dimension():
    from inrkit.stages.fit import field_config

    image = field_config("pe-ce", 2, 3, 64, 16, 3, 2, "nearest", "coarse-to-fine", 13, 30.0, 0)
    video = field_config("pe-ce", 3, 3, 64, 16, 3, 2, "nearest", "coarse-to-fine", 9, 30.0, 0)
    assert (image["ce_channels"], image["ce_size"]) == (128, 256)
    assert (video["ce_channels"], video["ce_size"]) == (64, 64)


@pytest.mark.parametrize("args, message", [
    (["--arch", "loe", "--depth", "4", "--tiles", "2,4"], "--tiles needs depth - 1 = 3 values (--depth 4), got 2"),
    (["--arch", "loe", "--depth", "4", "--widths", "8,8,8,8"], "--widths needs depth - 1 = 3 values"),
    (["--arch", "loe", "--depth", "3", "--scales", "2,x"], "--scales takes comma-separated numbers"),
    (["--arch", "loe", "--depth", "3", "--tiles", "2,1"], "--tiles takes comma-separated integers of at least 2"),
    (["--arch", "siren", "--widths", "8,8"], "--widths applies to --arch pe | pe-ce | loe, not siren"),
    (["--arch", "pe", "--ce-size", "8"], "--ce-size applies to --arch pe-ce, not pe"),
    (["--betas", "0.9"], "--betas takes two numbers in [0, 1)"),
    (["--arch", "pe-ce", "--ce-size", "1"], "--ce-size must be at least 2"),
])
def test_bad_per_layer_options_are_one_sentence_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "run" / "f.safetensors"
    code, err = fuzz.run_cli("fit", "builtin:camera", "--size", "8", "--steps", "2", "--out", str(out), *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "run") or not any((tmp_path / "run").iterdir())
