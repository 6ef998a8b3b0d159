"""Levels-of-Experts: blending (Eq. 4-5), arrangements (supp. Tables 5-6), the field, and the fast
full-grid path against the generic path."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from inrkit.core.errors import InrkitError
from inrkit.fields import build_field, loe
from inrkit.fields.encoding import PositionalEncoding
from inrkit.fields.grid import make_grid
from inrkit.fields.loe import CONSTANT_INPUT_DIM, LoEField, LoELinear, arrangement


def reference_coefficient(q: list[float], j: tuple[int, ...], tile: int, blend: str) -> float:
    """Eq. 4 / Eq. 5 for candidate j at grid position q, one point at a time, product over axes."""
    value = 1.0
    for qa, ja in zip(q, j, strict=True):
        if blend == "nearest":
            value *= 1.0 if math.floor(qa) % tile == ja else 0.0
        else:  # Python's % is the positive remainder a - b*floor(a/b) for b > 0
            value *= max(0.0, 1.0 - abs((qa + 1 - ja) % tile - 1))
    return value


def dense_coefficients(layer: LoELinear, coords: torch.Tensor) -> torch.Tensor:
    """(P, N) coefficients from the layer's sparse (index, weight) pairs."""
    index, weight = layer.blend(coords)
    dense = torch.zeros(coords.shape[0], layer.weight.shape[0], dtype=weight.dtype)
    return dense.scatter_add_(1, index, weight)


def random_coords(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Points well outside [0, 1] too, negative ones included, plus exact cell corners."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(n, dim, generator=g, dtype=torch.float64) * 3 - 1.2
    coords[:4] = torch.tensor([[-1.0] * dim, [0.0] * dim, [0.5] * dim, [-0.25] * dim], dtype=torch.float64)
    return coords


def make_layer(tile, dim, blend, in_f=3, out_f=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(dim, dim, generator=g) * 3
    b = torch.rand(dim, generator=g)
    return LoELinear(in_f, out_f, tile, dim, A, b, blend).double()


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("tile,dim", [(2, 1), (3, 1), (2, 2), (4, 2), (3, 3)])
def test_blend_coefficients_match_reference(blend, tile, dim):
    layer = make_layer(tile, dim, blend)
    coords = random_coords(40, dim)
    dense = dense_coefficients(layer, coords)
    q = layer.grid_position(coords)
    assert q.min() < -1  # negative grid positions exercise the positive modulo
    candidates = list(itertools.product(range(tile), repeat=dim))  # flat index order
    expected = torch.tensor(
        [[reference_coefficient(qp, j, tile, blend) for j in candidates] for qp in q.tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(dense, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tile,dim", [(2, 2), (4, 2), (2, 3)])
def test_nearest_is_one_hot_and_linear_sums_to_one(tile, dim):
    coords = random_coords(200, dim)
    nearest = dense_coefficients(make_layer(tile, dim, "nearest"), coords)
    assert torch.equal(nearest.sum(1), torch.ones(200, dtype=torch.float64))
    assert torch.equal((nearest == 1).sum(1), torch.ones(200, dtype=torch.long))
    linear = dense_coefficients(make_layer(tile, dim, "linear"), coords)
    assert linear.min() >= 0
    torch.testing.assert_close(linear.sum(1), torch.ones(200, dtype=torch.float64))


def dense_layer_reference(layer: LoELinear, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """psi(p) x + bias with psi(p) = sum_j B_j(q) W_j (Eq. 3), computed for every candidate."""
    per_candidate = torch.einsum("pi,nio->pno", x, layer.weight)
    return torch.einsum("pn,pno->po", dense_coefficients(layer, coords), per_candidate) + layer.bias


@pytest.mark.parametrize("blend", ["nearest", "linear"])
def test_layer_forward_and_gradients_match_eq3(blend):
    layer = make_layer(2, 2, blend)
    coords = random_coords(300, 2)
    x = torch.randn(300, 3, dtype=torch.float64, requires_grad=True)
    out = layer(x, coords)
    ref = dense_layer_reference(layer, x, coords)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, layer.weight, layer.bias], g)
    ref_grads = torch.autograd.grad(ref, [x, layer.weight, layer.bias], g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


KAIMING_BOUND = math.sqrt(6 / (1 + 0.2**2))  # uniform Kaiming for Leaky ReLU 0.2: U(+-KAIMING_BOUND / sqrt(fan_in))


def test_layer_init_and_buffers():
    A, b = torch.eye(2) * 4, torch.tensor([0.5, 0.25])
    layer = LoELinear(16, 8, 2, 2, A, b)
    assert layer.weight.shape == (4, 16, 8)
    bound = KAIMING_BOUND / math.sqrt(16)  # each candidate is a layer of fan-in 16 (supp. A)
    assert layer.weight.abs().max() <= bound
    assert layer.weight.std() > 0.9 * bound / math.sqrt(3)  # uniform over the whole range
    assert torch.equal(layer.bias, torch.zeros(8))
    state = layer.state_dict()
    assert torch.equal(state["A"], A) and torch.equal(state["b"], b)


def test_arrangement_scales():
    def scales(name, **kw):
        affines = arrangement(name, **{"n_layers": 9, "tile": 2, "dim": 2, "resolution": 256, **kw})
        for A, b in affines:
            assert torch.equal(A, A[0, 0] * torch.eye(2)) and torch.equal(b, torch.zeros(2))
        return [A[0, 0].item() for A, _ in affines]

    assert scales("coarse-to-fine") == [2, 4, 8, 16, 32, 64, 128, 256, 256]  # capped at the pixel pitch
    assert scales("coarse-to-fine", resolution=512) == [2**i for i in range(1, 10)]
    assert scales("coarse-to-fine", tile=4, n_layers=3) == [4, 16, 64]
    assert scales("fine-to-coarse") == [256, 256, 128, 64, 32, 16, 8, 4, 2]
    assert scales("interleaved") == [256] * 9
    assert scales("chunked") == [2] * 9
    # supp. B, Table 6: A_1 = 4 I, A_i = 4^(i-1) * 2 I, capped at the pixel pitch (dagger)
    assert scales("table6", tile=4, n_layers=7, resolution=8192) == [4, 8, 32, 128, 512, 2048, 8192]
    assert scales("table6", tile=4, n_layers=7, resolution=512) == [4, 8, 32, 128, 512, 512, 512]
    # supp. C: 2^3 tiles on layer 1, 4^3 on the next 4 -> grid resolutions 2, 8, 32, 128, 512
    assert scales("coarse-to-fine", tile=[2, 4, 4, 4, 4], n_layers=5, resolution=512) == [2, 8, 32, 128, 512]
    assert scales("chunked", tile=[2, 4, 4], n_layers=3) == [2, 4, 4]
    with pytest.raises(InrkitError, match="2 tile sizes given for 3 LoE layers"):
        arrangement("coarse-to-fine", 3, [2, 4], 2, 64)
    with pytest.raises(InrkitError, match="explicit"):
        arrangement("explicit", 3, 2, 2, 64)
    # coarse-to-fine layer 1 covers [0, 1] exactly once: every candidate, each on one cell
    layer = LoELinear(1, 1, 2, 2, *arrangement("coarse-to-fine", 1, 2, 2, 64)[0])
    index = layer.blend(make_grid((64, 64)).reshape(-1, 2))[0].reshape(64, 64)
    assert torch.equal(index[:32, :32].unique(), torch.tensor([0]))
    assert torch.equal(index[32:, 32:].unique(), torch.tensor([3]))


def test_random_affine_is_seeded():
    a = arrangement("random-affine", 200, 4, 2, 8192, seed=3)
    b = arrangement("random-affine", 200, 4, 2, 8192, seed=3)
    c = arrangement("random-affine", 200, 4, 2, 8192, seed=4)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    entries = torch.stack([A for A, _ in a])
    offsets = torch.stack([o for _, o in a])
    assert 0.9 * 256 < entries.std() < 1.1 * 256  # N(0, 256^2) at 8192 px, as in Table 6
    assert offsets.min() >= 0 and offsets.max() < 1


def test_unknown_names_are_clear_errors():
    with pytest.raises(InrkitError, match="arrangement"):
        arrangement("spiral", 3, 2, 2, 64)
    with pytest.raises(InrkitError, match="blend"):
        LoEField(blend="cubic")
    with pytest.raises(InrkitError, match="tile"):
        LoEField(tile=1)
    with pytest.raises(InrkitError, match="loe_layers"):
        LoEField(depth=4, loe_layers=4)


def grads_of(field, out, g):
    return torch.autograd.grad(out, list(field.parameters()), g, allow_unused=True)


GRID_CASES = [
    # (shape, tile, arrangement, resolution, depth)
    ((16, 16), 2, "coarse-to-fine", 16, 6),  # last two layers share their candidate bits
    ((16, 32), 2, "coarse-to-fine", 16, 5),  # non-square grid
    ((16, 16), 2, "fine-to-coarse", 16, 5),
    ((16, 16), 2, "interleaved", 16, 4),
    ((16, 16), 2, "chunked", 4, 4),
    ((16, 16), 4, "coarse-to-fine", 16, 3),
    ((8, 8, 8), 2, "coarse-to-fine", 8, 4),
    ((8, 8, 8), 2, "fine-to-coarse", 8, 4),
    ((16, 16), [4, 2, 2], "coarse-to-fine", 16, 4),  # per-layer tiles
    ((8, 16, 16), [2, 4, 2], "coarse-to-fine", 16, 4),  # supp. C's shape of tiles on a video grid
    ((16, 16), [4, 4, 4], "table6", 16, 4),
]


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("shape,tile,name,resolution,depth", GRID_CASES)
def test_fast_grid_path_matches_generic_path(blend, shape, tile, name, resolution, depth):
    torch.manual_seed(0)
    tiles = dict(tiles=tile) if isinstance(tile, list) else dict(tile=tile)
    field = LoEField(
        in_dim=len(shape), out_dim=2, width=8, depth=depth, blend=blend,
        arrangement=name, resolution=resolution, frequencies=3, **tiles,
    ).double()  # fmt: skip
    if name == "coarse-to-fine" and len(shape) == 3 and isinstance(tile, list):  # 8 frames: scale 16 > 8
        assert field.grid_plan(shape) is None
        shape = (16, 16, 16)
    assert field.grid_plan(shape) is not None  # the structured path is the one under test
    fast = field.forward_grid(shape)
    generic = field(make_grid(shape).double())
    assert fast.shape == (*shape, 2)
    torch.testing.assert_close(fast, generic, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(fast)
    for a, b in zip(grads_of(field, fast, g), grads_of(field, generic, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_linear_grid_path_in_row_chunks(monkeypatch):
    """The chunked linear-blend kernel (uneven last chunk) gives the generic path's values and grads."""
    monkeypatch.setattr(loe, "BLEND_CHUNK_ELEMENTS", 1000)  # a few rows per chunk of 64-row blocks
    torch.manual_seed(0)
    field = LoEField(width=8, depth=4, blend="linear", resolution=16, frequencies=2).double()
    fast = field.forward_grid((16, 16))
    generic = field(make_grid((16, 16)).double())
    torch.testing.assert_close(fast, generic, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(fast)
    for a, b in zip(grads_of(field, fast, g), grads_of(field, generic, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_fast_grid_path_in_float32_matches_up_to_round_off():
    torch.manual_seed(0)
    field = LoEField(width=16, depth=6, resolution=32)
    torch.testing.assert_close(field.forward_grid((32, 32)), field(make_grid((32, 32))), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,shape,ranges",
    [
        ({"arrangement": "random-affine"}, (16, 16), None),
        ({}, (12, 20), None),  # not powers of two
        ({}, (16, 16), [(-0.5, 1.5), (-0.5, 1.5)]),  # zoomed out
        ({"resolution": 64, "arrangement": "interleaved"}, (16, 16), None),  # pitch finer than pixels
    ],
)
def test_forward_grid_falls_back_to_generic_path(kwargs, shape, ranges):
    torch.manual_seed(0)
    field = LoEField(width=8, depth=4, frequencies=2, **{"resolution": 16, **kwargs}).double()
    assert field.grid_plan(shape, ranges) is None
    torch.testing.assert_close(field.forward_grid(shape, ranges), field(make_grid(shape, ranges).double()))


def reference_field(field: LoEField, coords: torch.Tensor) -> torch.Tensor:
    """Layer by layer with the dense Eq. 3 reference, no sorting."""
    x = field.encoding(coords) if field.encoding else coords.new_ones(coords.shape[0], CONSTANT_INPUT_DIM)
    for layer in field.loe:
        x = F.leaky_relu(dense_layer_reference(layer, x, coords), 0.2)
    for i, layer in enumerate(field.plain):
        x = layer(x)
        if i + 1 < len(field.plain):
            x = F.leaky_relu(x, 0.2)
    return x


def assert_matches_reference(field: LoEField, coords: torch.Tensor) -> None:
    """The field's generic path gives the dense reference's values and gradients at coords."""
    out = field(coords)
    ref = reference_field(field, coords)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(grads_of(field, out, g), grads_of(field, ref, g), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("blend", ["nearest", "linear"])
@pytest.mark.parametrize("frequencies,loe_layers,per_layer", [
    (3, None, {}), (0, None, {}), (3, 2, {}),
    (3, None, dict(widths=[12, 8, 6, 4], tiles=[2, 4, 3, 2])),  # per-layer widths and tiles (supp. B, C)
])
def test_generic_field_matches_reference(blend, frequencies, loe_layers, per_layer):
    torch.manual_seed(0)
    field = LoEField(
        width=8, depth=5, tile=2, blend=blend, resolution=16, frequencies=frequencies, loe_layers=loe_layers,
        **per_layer,
    ).double()
    coords = random_coords(500, 2)
    assert_matches_reference(field, coords)
    assert field(coords.reshape(20, 25, 2)).shape == (20, 25, 1)


def test_linear_random_points_in_row_chunks(monkeypatch):
    """Linear blending on random points splits long candidate segments into chunks: same values and grads."""
    monkeypatch.setattr(loe, "BLEND_CHUNK_ELEMENTS", 100)  # a few rows per chunk of each segment
    torch.manual_seed(0)
    field = LoEField(width=8, depth=4, tile=2, blend="linear", resolution=16, frequencies=2).double()
    assert_matches_reference(field, random_coords(500, 2))


def test_config_round_trip_rebuilds_identical_field():
    torch.manual_seed(0)
    field = LoEField(in_dim=2, out_dim=3, width=8, depth=5, tile=4, arrangement="random-affine", resolution=64, seed=7)
    config = json.loads(json.dumps(field.config))
    assert config["arch"] == "loe" and len(config["affines"]) == 4
    for rebuilt in (LoEField.from_config(config), build_field(config)):
        for a, b in zip(rebuilt.loe, field.loe, strict=True):  # grids rebuilt exactly, without the seed
            assert torch.equal(a.A, b.A) and torch.equal(a.b, b.b)
        rebuilt.load_state_dict(field.state_dict())
        coords = torch.rand(100, 2) * 2 - 0.5
        assert torch.equal(rebuilt(coords), field(coords))
        assert rebuilt.config == field.config


def test_constant_input_variant():
    torch.manual_seed(0)
    field = LoEField(width=8, depth=5, resolution=16, frequencies=0)
    assert field.encoding is None
    assert not any(isinstance(m, PositionalEncoding) for m in field.modules())
    assert field.loe[0].in_features == CONSTANT_INPUT_DIM
    out = field.forward_grid((16, 16))
    assert torch.isfinite(out).all()
    assert out.reshape(-1).unique().numel() > 100  # the tiled weights alone tell the pixels apart
    torch.testing.assert_close(out, field(make_grid((16, 16))))


def test_macs_per_sample():
    pe = PositionalEncoding(2, 8).out_dim  # 34
    assert LoEField().macs_per_sample() == pe * 64 + 8 * 64 * 64 + 64 * 1
    assert LoEField(blend="linear").macs_per_sample() == 4 * (pe * 64 + 8 * 64 * 64) + 64
    pe3 = PositionalEncoding(3, 8).out_dim  # 51
    assert LoEField(in_dim=3, blend="linear", depth=3).macs_per_sample() == 8 * (pe3 * 64 + 64 * 64) + 64
    assert LoEField(frequencies=0, depth=3).macs_per_sample() == CONSTANT_INPUT_DIM * 64 + 64 * 64 + 64
    assert LoEField(depth=4, loe_layers=1).macs_per_sample() == pe * 64 + 2 * 64 * 64 + 64


def test_per_layer_widths_and_tiles_build_the_layers_asked_for():
    field = LoEField(in_dim=3, out_dim=3, depth=6, widths=[32, 24, 16, 16, 16], tiles=[2, 4, 4, 4, 4],
                     resolution=512, frequencies=2)
    assert [tuple(layer.weight.shape) for layer in field.loe] == [
        (8, 15, 32), (64, 32, 24), (64, 24, 16), (64, 16, 16), (64, 16, 16)]
    assert [layer.A[0, 0].item() for layer in field.loe] == [2, 8, 32, 128, 512]  # supp. C
    assert (field.plain[0].in_features, field.plain[0].out_features) == (16, 3)
    assert field.config["widths"] == [32, 24, 16, 16, 16] and field.config["tiles"] == [2, 4, 4, 4, 4]
    with pytest.raises(InrkitError, match=r"depth - 1 = 5 positive values"):
        LoEField(depth=6, widths=[8, 8])
    with pytest.raises(InrkitError, match=r"one value per LoE layer \(5\), got 2"):
        LoEField(depth=6, tiles=[2, 4])


def test_config_without_per_layer_keys_is_the_old_field():
    """Artifacts from before per-layer widths and tiles rebuild as one width and one tile throughout."""
    old = dict(arch="loe", in_dim=2, out_dim=1, width=8, depth=4, tile=4, blend="nearest",
               arrangement="coarse-to-fine", resolution=64, frequencies=2, seed=0, loe_layers=None)
    field = build_field(old)
    assert [tuple(layer.weight.shape) for layer in field.loe] == [(16, 10, 8), (16, 8, 8), (16, 8, 8)]
    assert [layer.A[0, 0].item() for layer in field.loe] == [4, 16, 64]
    assert "widths" not in field.config and "tiles" not in field.config


def test_every_linear_layer_has_the_uniform_kaiming_init():
    """One initialisation (supp. A) for the LoE layers, LoE's plain layers and the PE MLP: U(+-gain sqrt(3/in))."""
    from inrkit.fields.mlp import FourierMLP

    torch.manual_seed(0)
    loe_field, mlp = LoEField(width=256, depth=4, loe_layers=2), FourierMLP(width=256, depth=4)
    weights = [(layer.weight, layer.in_features) for layer in [*loe_field.loe, *loe_field.plain, *mlp.linears]]
    for w, fan_in in weights:
        bound = KAIMING_BOUND / math.sqrt(fan_in)
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    biases = [layer.bias for layer in [*loe_field.loe, *loe_field.plain, *mlp.linears]]
    assert all(torch.equal(b, torch.zeros_like(b)) for b in biases)


def test_paper_parameter_and_mac_counts():
    """Supp. B (8 layers [512, 384, 256 x 5, 3], 7 LoE layers of 4x4 tiles, L = 13) against Table 1's 9.37M
    parameters, and supp. C (6 layers of 256, tiles 2^3 then 4^3, L = 9) against Table 2's 16.9M and 0.28M MACs."""
    image = LoEField(in_dim=2, out_dim=3, depth=8, widths=[512, 384, 256, 256, 256, 256, 256], tile=4,
                     arrangement="table6", resolution=8192, frequencies=13)
    params = sum(p.numel() for p in image.parameters())
    assert params == 16 * (54 * 512 + 512 * 384 + 384 * 256 + 4 * 256 * 256) + 256 * 3 + 512 + 384 + 5 * 256 + 3
    assert abs(params / 9.37e6 - 1) < 0.002
    video = LoEField(in_dim=3, out_dim=3, width=256, depth=6, tiles=[2, 4, 4, 4, 4], resolution=512, frequencies=9)
    assert round(sum(p.numel() for p in video.parameters()) / 1e5) == 169  # 16.9M
    assert round(video.macs_per_sample() / 1e4) == 28  # 0.28M


def test_recipe_rows_have_the_papers_counts():
    """bench/loe_counts.py's rows (the Table 1 and 2 recipes at the paper's signal sizes) within 2% of Table 1/2's
    parameters, except Table 1's PE + CE: supp. B's 128 x 256^2 embedding is 9.04M, the table's best grid 9.37M."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("loe_counts", Path(__file__).parents[1] / "bench" / "loe_counts.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    image = bench.rows("loe-table1-image.json", bench.TABLE1, bench.IMAGE)
    video = bench.rows("loe-table2-video.json", bench.TABLE2, bench.VIDEO)
    assert len(image) == 9 and len(video) == 5
    for row in image + video:
        if row["paper_params"] is None:
            continue
        if row["row"] == "PE + CE" and row in image:
            assert row["params"] == 128 * 256**2 + 651_008 + 512 + 384 + 5 * 256 + 3
            continue
        assert abs(row["params"] / row["paper_params"] - 1) < 0.02, row
        # MACs: Table 2's (two digits) within 2%; Table 1's 0.57M rows are 0.585M (its own PE + CE and
        # constant-input rows, 0.65M and 0.56M, are 0.585M plus or minus the first layer's change)
        assert abs(row["macs"] / row["paper_macs"] - 1) < (0.02 if row in video else 0.03), row
