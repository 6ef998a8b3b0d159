import math

import pytest
import torch

from inrkit.core.errors import InrkitError
from inrkit.core.parse import parse_ranges, parse_size
from inrkit.fields import build_field
from inrkit.fields.encoding import FourierFeatures, PositionalEncoding
from inrkit.fields.grid import evaluate, grid_points, make_grid
from inrkit.fields.mlp import FourierMLP
from inrkit.fields.siren import Siren


def test_grid_pixel_centres_any_dimension():
    g = make_grid((2, 4))
    assert g.shape == (2, 4, 2)
    assert torch.allclose(g[:, 0, 1], torch.full((2,), 0.125))  # x of column 0 = 0.5/4
    assert torch.allclose(g[1, :, 0], torch.full((4,), 0.75))  # y of row 1 = 1.5/2
    v = make_grid((3, 2, 2), [(0, 1), (-1, 1), (0, 2)])
    assert v.shape == (3, 2, 2, 3)
    assert torch.allclose(v[0, 0, 0], torch.tensor([1 / 6, -0.5, 0.5]))


def test_grid_points_match_full_grid_in_raster_order():
    shape, ranges = (5, 7), [(-0.3, 1.3), (0.0, 2.0)]
    full = make_grid(shape, ranges).reshape(-1, 2)
    assert torch.allclose(grid_points(shape, ranges, 3, 29), full[3:29])


def test_evaluate_chunked_equals_direct():
    f = FourierMLP(width=16, depth=3)
    direct = f(make_grid((9, 11))).detach()
    assert torch.allclose(evaluate(f, (9, 11), chunk=7), direct, atol=1e-6)


def test_parse_size_and_ranges():
    assert parse_size("256") == (256, 256)
    assert parse_size("128x64") == (128, 64)
    assert parse_ranges("-0.3,1.3") == [(-0.3, 1.3), (-0.3, 1.3)]
    # lo_x,hi_x,lo_y,hi_y comes back in axis order (y, x)
    assert parse_ranges("0,1,2,3") == [(2.0, 3.0), (0.0, 1.0)]
    for bad in ("1,0", "a,b", "0,1,2"):
        with pytest.raises(InrkitError):
            parse_ranges(bad)
    with pytest.raises(InrkitError):
        parse_size("0")


def test_positional_encoding_known_values():
    pe = PositionalEncoding(1, 2)
    out = pe(torch.tensor([[0.25]]))
    expect = [0.25, math.sin(math.pi / 4), math.sin(math.pi / 2), math.cos(math.pi / 4), math.cos(math.pi / 2)]
    assert torch.allclose(out, torch.tensor([expect]), atol=1e-6)
    assert pe.out_dim == 5


def test_fourier_features_are_stored_and_deterministic():
    a, b = FourierFeatures(2, 8, 10.0, seed=3), FourierFeatures(2, 8, 10.0, seed=3)
    assert torch.equal(a.B, b.B) and "B" in a.state_dict()
    assert a(torch.rand(5, 2)).shape == (5, 16)


def test_siren_initialisation_ranges():
    s = Siren(in_dim=2, width=64, depth=4, w0_first=30.0, w0_hidden=30.0)
    first, hidden = s.layers[0].linear.weight, s.layers[1].linear.weight
    assert first.abs().max() <= 1 / 2 + 1e-6 and first.abs().max() > 0.4
    bound = math.sqrt(6 / 64) / 30
    assert hidden.abs().max() <= bound + 1e-7 and hidden.abs().max() > 0.9 * bound
    # SIREN's init keeps pre-activations ~ arcsine-distributed: hidden outputs span [-1, 1]
    h = s.layers[1](s.layers[0](torch.rand(4096, 2) * 2 - 1))
    assert 0.3 < h.std() < 0.9


def test_pe_mlp_uses_leaky_relu_and_zero_bias():
    f = FourierMLP(width=32, depth=4, frequencies=4)
    assert all(torch.all(m.bias == 0) for m in f.linears)
    assert f.act.negative_slope == 0.2
    assert f.macs_per_sample() == (2 * 9) * 32 + 32 * 32 * 2 + 32


@pytest.mark.parametrize("cfg", [
    dict(arch="siren", in_dim=2, out_dim=3, width=16, depth=3),
    dict(arch="pe", in_dim=3, out_dim=1, width=16, depth=3, frequencies=4),
])
def test_build_field_round_trip(cfg):
    f = build_field(cfg)
    g = build_field(f.config)
    g.load_state_dict(f.state_dict())
    x = torch.rand(10, cfg["in_dim"])
    assert torch.equal(f(x), g(x))


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(InrkitError, match="unknown field architecture"):
        build_field({"arch": "nope"})


def test_pe_mlp_per_layer_widths():
    """Supp. B's widths: 8 layers [512, 384, 256 x 5, 3] with L = 13 is Table 1's PE MLP (0.59M parameters)."""
    f = FourierMLP(in_dim=2, out_dim=3, depth=8, widths=[512, 384, 256, 256, 256, 256, 256], frequencies=13)
    assert [m.out_features for m in f.linears] == [512, 384, 256, 256, 256, 256, 256, 3]
    assert round(sum(p.numel() for p in f.parameters()) / 1e4) == 59 and f.config["widths"][:2] == [512, 384]
    assert "widths" not in FourierMLP(depth=3).config  # without them, an artifact has --width throughout
    assert build_field(f.config)(torch.zeros(1, 2)).shape == (1, 3)
    with pytest.raises(InrkitError, match="depth - 1 = 7 positive values"):
        FourierMLP(depth=8, widths=[16, 16])
