"""Levels-of-Experts speed: forward + backward time against dense layers, measured side by side.

    .venv/bin/python bench/loe_speed.py        # prints a markdown table, writes bench/results/loe_speed.json

Every row is a ratio to a dense baseline timed in the same loop (these machines are noisy): after a
warm-up, each repetition runs every variant of a group once, in turn, and the table reports medians
(the JSON also keeps minima). 64 channels throughout; each call is forward plus backward with a fixed
random output gradient.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

# Waiting OpenMP threads sleep instead of spinning (unless OMP_WAIT_POLICY is already set). On a
# shared, oversubscribed 2-core machine spinning threads burn the core their partner needs, each
# parallel region then costs a scheduler time slice, and timings measure the other tenants (worst for
# code with many small ops: up to 6x on the chunked linear blend). Applies to both sides alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from inrkit.fields.encoding import PositionalEncoding  # noqa: E402
from inrkit.fields.loe import (  # noqa: E402
    LoEField,
    LoELinear,
    _LeakyReluPermute,  # with _SegmentMatmul: the generic path's per-layer step, timed alone
    _SegmentMatmul,
    arrangement,
    leaky_relu_relayout,
)

C = 64  # channels
TARGETS = {"nearest-grid": 1.15, "nearest-random": 1.6, "linear-grid": 4.5, "nearest-grid-stack": 1.05,
           "paper-grid-2d": 1.05, "paper-random-2d": 1.5, "paper-grid-3d": 1.05, "paper-random-3d": 1.5,
           "paper-layer-2d": 1.15}
# issue 13: whole nearest field on a full grid < 1.05x dense, layers <= 1.15x, random points <= 1.5x


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_times(cases: dict, reps: int, warmup: int, device: torch.device) -> dict[str, tuple[float, float]]:
    """(median, min) milliseconds of each zero-argument callable, the variants alternating every repetition."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: (statistics.median(ts), min(ts)) for name, ts in times.items()}


def fwd_bwd(forward, x, grad_out):
    """A callable running forward and backward with a fixed output gradient (x: leaf input or None)."""

    def run():
        if x is not None:
            x.grad = None
        forward().backward(grad_out)

    return run


def row(case: str, kind: str, points: int, times: dict, loe: str, dense: str) -> dict:
    (loe_med, loe_min), (dense_med, dense_min) = times[loe], times[dense]
    return {
        "case": case, "kind": kind, "points": points, "loe_ms": loe_med, "dense_ms": dense_med,
        "ratio": loe_med / dense_med, "loe_min_ms": loe_min, "dense_min_ms": dense_min,
        "ratio_of_minima": loe_min / dense_min,
    }  # fmt: skip


def unit_grid(size: int, device) -> torch.Tensor:
    axis = (torch.arange(size) + 0.5) / size
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).to(device)


def dense_mlp(depth: int, device) -> tuple[nn.Module, nn.Module]:
    """The PE-MLP baseline with LoEField's default widths (depth linear layers, Leaky ReLU 0.2)."""
    encoding = PositionalEncoding(2, 8)
    widths = [encoding.out_dim] + [C] * (depth - 1) + [1]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i + 1 < depth:
            layers.append(nn.LeakyReLU(0.2))
    return encoding.to(device), nn.Sequential(*layers).to(device)


def naive_gather_scatter(x, coords, layer: LoELinear):
    """Reference: per candidate, gather its rows, multiply, scatter back (Sec. 3's description)."""
    index = layer.blend(coords)[0][:, 0]
    out = x.new_zeros(x.shape[0], layer.out_features)
    for t in range(layer.weight.shape[0]):
        rows = (index == t).nonzero().squeeze(1)
        out = out.index_copy(0, rows, x.index_select(0, rows) @ layer.weight[t])
    return out + layer.bias


def grid_layer_rows(size: int, blend: str, args, device) -> list[dict]:
    """Every depth position of the 9-layer coarse-to-fine stack on a size^2 grid: the LoE layer plus
    the Leaky ReLU after it (which, where the next layer's candidate bits differ, also writes the next
    layout) vs nn.Linear plus Leaky ReLU; and the layer alone vs nn.Linear alone."""
    points = size * size
    phases = LoEField(width=C, depth=10, blend=blend, resolution=size).grid_plan((size, size))
    layer = LoELinear(C, C, 2, 2, *arrangement("coarse-to-fine", 1, 2, 2, size)[0], blend).to(device)
    x = torch.randn(points, C, device=device, requires_grad=True)
    grad_out = torch.randn(points, C, device=device)
    dense = nn.Linear(C, C).to(device)
    weights = None
    if blend == "linear":  # corner coefficients as on a coarse layer: 4 non-zero ones per point
        weights = torch.rand(points, 4, device=device)
        weights /= weights.sum(1, keepdim=True)
    cases = {
        "dense": fwd_bwd(lambda: dense(x), x, grad_out),
        "loe": fwd_bwd(lambda: layer.forward_blocks(x, weights), x, grad_out),
        "dense+act": fwd_bwd(lambda: F.leaky_relu(dense(x), 0.2), x, grad_out),
    }
    depth = 0
    for p, phase in enumerate(phases):
        for i in range(phase.n_layers):
            depth += 1
            if i + 1 == phase.n_layers and p + 1 < len(phases):
                act = lambda h, s=phase.layout, d=phases[p + 1].layout: leaky_relu_relayout(h, s, d)  # noqa: E731
            else:
                act = lambda h: F.leaky_relu(h, 0.2)  # noqa: E731
            cases[f"depth {depth}"] = fwd_bwd(lambda a=act: a(layer.forward_blocks(x, weights)), x, grad_out)
    t = interleaved_times(cases, args.reps, args.warmup, device)
    kind, grid = f"{blend}-grid", f"{size}x{size}"
    rows = [row(f"{blend} LoE layer alone, {grid} grid", kind, points, t, "loe", "dense")]
    for d in range(1, depth + 1):
        rows.append(row(f"{blend} layer {d}/9 + activation, {grid} grid", kind, points, t, f"depth {d}", "dense+act"))
    return rows


def grid_stack_row(size: int, blend: str, args, device) -> dict:
    """The whole field (PE, 9 LoE layers, output layer) via forward_grid vs the same-size dense MLP."""
    field = LoEField(width=C, depth=10, blend=blend, resolution=size).to(device)
    encoding, mlp = dense_mlp(10, device)
    grid = unit_grid(size, device)
    grad_out = torch.randn(size, size, 1, device=device)
    cases = {
        "dense": fwd_bwd(lambda: mlp(encoding(grid)), None, grad_out),
        "loe": fwd_bwd(lambda: field.forward_grid((size, size)), None, grad_out),
    }
    t = interleaved_times(cases, args.stack_reps, args.warmup, device)
    case = f"{blend}: 10-layer field, forward_grid {size}x{size} vs dense MLP"
    return row(case, f"{blend}-grid-stack", size * size, t, "loe", "dense")


def random_rows(points: int, args, device) -> list[dict]:
    """Nearest LoE on random points anywhere (coordinates in [-0.5, 1.5]^2)."""
    gen = torch.Generator().manual_seed(0)
    coords = (torch.rand(points, 2, generator=gen) * 2 - 0.5).to(device)
    x = torch.randn(points, C, device=device, requires_grad=True)
    grad_out = torch.randn(points, C, device=device)
    affines = arrangement("coarse-to-fine", 9, 2, 2, 512)
    layer, after = (LoELinear(C, C, 2, 2, A, b).to(device) for A, b in affines[4:6])
    # the generic field path's step for one layer: rows already in this layer's candidate order,
    # block matmuls, then the activation writes the rows in the next layer's order
    order, order_after = (torch.argsort(la.blend(coords)[0][:, 0], stable=True) for la in (layer, after))
    counts = torch.bincount(layer.blend(coords)[0][:, 0], minlength=4).tolist()
    inverse, inverse_after = torch.argsort(order), torch.argsort(order_after)
    to_next, from_next = inverse[order_after], inverse_after[order]

    def step():
        h = _SegmentMatmul.apply(x, layer.weight, layer.bias, counts)
        return _LeakyReluPermute.apply(h, to_next, from_next)

    dense = nn.Linear(C, C).to(device)
    cases = {
        "dense": fwd_bwd(lambda: dense(x), x, grad_out),
        "dense+act": fwd_bwd(lambda: F.leaky_relu(dense(x), 0.2), x, grad_out),
        "step": fwd_bwd(step, x, grad_out),
        "loe": fwd_bwd(lambda: layer(x, coords), x, grad_out),
        "naive": fwd_bwd(lambda: naive_gather_scatter(x, coords, layer), x, grad_out),
    }
    t = interleaved_times(cases, args.reps, args.warmup, device)
    field = LoEField(width=C, depth=10, resolution=512).to(device)
    encoding, mlp = dense_mlp(10, device)
    grad_field = torch.randn(points, 1, device=device)
    stack = {
        "dense": fwd_bwd(lambda: mlp(encoding(coords)), None, grad_field),
        "loe": fwd_bwd(lambda: field(coords), None, grad_field),
    }
    s = interleaved_times(stack, args.stack_reps, args.warmup, device)
    n = f"{points} random points"
    return [
        row(f"nearest layer + activation, generic stack step, {n}", "nearest-random", points, t, "step", "dense+act"),
        row(f"nearest LoELinear.forward alone (sort, gather, matmuls, unsort), {n}", "info", points, t, "loe", "dense"),
        row(f"naive gather/matmul/scatter layer, {n} (reference)", "reference", points, t, "naive", "dense"),
        row(f"nearest: 10-layer field, forward on {n} vs dense MLP", "nearest-random-stack", points, s, "loe", "dense"),
    ]


def naive_grid_row(size: int, args, device) -> dict:
    """The naive per-candidate gather/matmul/scatter on a full grid, for reference."""
    coords = unit_grid(size, device).reshape(-1, 2)
    layer = LoELinear(C, C, 2, 2, *arrangement("coarse-to-fine", 9, 2, 2, size)[4]).to(device)
    dense = nn.Linear(C, C).to(device)
    x = torch.randn(size * size, C, device=device, requires_grad=True)
    grad_out = torch.randn(size * size, C, device=device)
    cases = {
        "dense": fwd_bwd(lambda: dense(x), x, grad_out),
        "naive": fwd_bwd(lambda: naive_gather_scatter(x, coords, layer), x, grad_out),
    }
    t = interleaved_times(cases, args.reps, args.warmup, device)
    case = f"naive gather/matmul/scatter layer, {size}x{size} grid (reference)"
    return row(case, "reference", size * size, t, "naive", "dense")


def paper_fields(table: int, resolution: int, device) -> tuple[nn.Module, nn.Module]:
    """(LoE, dense PE MLP) at the recipes' shapes: Table 1's (widths 512, 384, 256 x 5, 4x4 tiles on 7 layers,
    Table 6's scales) or Table 2's (width 256, tiles 2, 4, 4, 4, 4 per axis); L = log2(resolution)."""
    from inrkit.core.config import resolve
    from inrkit.fields import build_field
    from inrkit.stages.configs import FitConfig
    from inrkit.stages.fit import config_for

    recipe = Path(__file__).resolve().parents[1] / "recipes" / ("loe-table1-image.json" if table == 1 else
                                                                 "loe-table2-video.json")
    shape = (resolution,) * (2 if table == 1 else 3)
    fields = []
    for variant in ("", "pe-mlp" if table == 1 else "pe"):
        options = resolve(FitConfig, dict(signal="unused"), f"{recipe}#{variant}" if variant else recipe)
        options["frequencies"] = int(math.log2(resolution))
        fields.append(build_field(config_for(FitConfig(**options), shape, 3)).to(device))
    return fields[0], fields[1]


def paper_rows(args, device) -> list[dict]:
    """Forward + backward of the whole fields at the paper's shapes, LoE vs the dense PE MLP of the same widths:
    2-D (Table 1) on a 512^2 grid and on 262,144 random points, 3-D (Table 2) on a 64^3 grid and on 160,000
    random points (the recipes' batch_pixels). LoE on a grid uses forward_grid, the dense MLP the grid's
    coordinates; random points go through forward for both."""
    rows = []
    for table, resolution, random_points in ((1, 512, 262144), (2, 64, 160000)):
        loe, dense = paper_fields(table, resolution, device)
        dim = 2 if table == 1 else 3
        shape = (resolution,) * dim
        axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
        grid = torch.stack(torch.meshgrid(*([axis] * dim), indexing="ij"), -1).reshape(-1, dim).to(device)
        gen = torch.Generator().manual_seed(0)
        coords = torch.rand(random_points, dim, generator=gen).to(device)
        g_grid = torch.randn(*shape, 3, device=device)
        g_rand = torch.randn(random_points, 3, device=device)
        what = "Table 1 shape (512/384/256, 4x4 tiles)" if table == 1 else "Table 2 shape (256, tiles 2,4,4,4,4 ^3)"
        cases = {
            "dense-grid": fwd_bwd(lambda d=dense, x=grid, s=shape: d(x).reshape(*s, 3), None, g_grid),
            "loe-grid": fwd_bwd(lambda f=loe, s=shape: f.forward_grid(s), None, g_grid),
            "dense-random": fwd_bwd(lambda d=dense, x=coords: d(x), None, g_rand),
            "loe-random": fwd_bwd(lambda f=loe, x=coords: f(x), None, g_rand),
        }
        t = interleaved_times(cases, args.paper_reps, 1, device)
        grid_name = "x".join(map(str, shape))
        rows.append(row(f"nearest field, {what}, forward_grid {grid_name} vs dense", f"paper-grid-{dim}d",
                        grid.shape[0], t, "loe-grid", "dense-grid"))
        rows.append(row(f"nearest field, {what}, {random_points:,} random points vs dense", f"paper-random-{dim}d",
                        random_points, t, "loe-random", "dense-random"))
    return rows


def paper_layer_rows(args, device, size: int = 512) -> list[dict]:
    """Each position-dependent layer of Table 1's field (its own widths: 512, 384, 256, ...) alone on the
    size^2 grid, forward_blocks (rows already in the layer's block layout) vs nn.Linear of the same shape."""
    loe, _ = paper_fields(1, size, device)
    points = size * size
    rows = []
    for i, layer in enumerate(loe.loe, start=1):
        x = torch.randn(points, layer.in_features, device=device, requires_grad=True)
        grad_out = torch.randn(points, layer.out_features, device=device)
        dense = nn.Linear(layer.in_features, layer.out_features).to(device)
        cases = {"dense": fwd_bwd(lambda d=dense, a=x: d(a), x, grad_out),
                 "loe": fwd_bwd(lambda f=layer, a=x: f.forward_blocks(a), x, grad_out)}
        t = interleaved_times(cases, args.paper_reps, 1, device)
        rows.append(row(f"nearest layer {i} of Table 1's field ({layer.in_features}->{layer.out_features}, "
                        f"{layer.tile}x{layer.tile} tiles), {size}x{size} grid", "paper-layer-2d", points, t, "loe",
                        "dense"))
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| case | points | LoE ms | dense ms | ratio | ratio of minima | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        target = TARGETS.get(r["kind"])
        verdict = "" if target is None else f"<= {target}: {'met' if r['ratio'] <= target else 'MISSED'}"
        lines.append(
            f"| {r['case']} | {r['points']} | {r['loe_ms']:.1f} | {r['dense_ms']:.1f} | {r['ratio']:.2f} "
            f"| {r['ratio_of_minima']:.2f} | {verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own default)")
    parser.add_argument("--reps", type=int, default=9, help="timed repetitions of each single-layer case")
    parser.add_argument("--stack-reps", type=int, default=7, help="timed repetitions of each whole-field case")
    parser.add_argument("--large-reps", type=int, default=5, help="timed repetitions of the 512x512 layer cases")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--paper-reps", type=int, default=3, help="timed repetitions of the paper-shape fields")
    parser.add_argument("--only", choices=("all", "paper", "paper-layers", "small"), default="all",
                        help="paper: only the issue-13 rows at the paper's shapes; small: only the 64-channel rows")
    parser.add_argument("--out", default=None, help="default bench/results/loe_speed.json (--only paper: "
                        "loe_speed_paper.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None:
        name = {"paper": "loe_speed_paper.json", "paper-layers": "loe_speed_paper_layers.json"}.get(
            args.only, "loe_speed.json")
        args.out = str(Path(__file__).parent / "results" / name)
    device = torch.device(args.device)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = []
    if args.only in ("all", "small"):
        rows += grid_layer_rows(256, "nearest", args, device)
        large = argparse.Namespace(**{**vars(args), "reps": args.large_reps, "stack_reps": 3, "warmup": 1})
        rows += grid_layer_rows(512, "nearest", large, device)
        rows += [grid_stack_row(256, "nearest", args, device), grid_stack_row(512, "nearest", large, device)]
        rows += random_rows(65536, args, device)
        rows += grid_layer_rows(256, "linear", args, device)
        rows.append(grid_stack_row(256, "linear", args, device))
        rows.append(naive_grid_row(256, args, device))
    if args.only in ("all", "paper"):
        rows += paper_rows(args, device)
    if args.only in ("all", "paper", "paper-layers"):
        rows += paper_layer_rows(args, device)
    print(table(rows))
    meta = {
        "command": f"python bench/loe_speed.py --only {args.only}", "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device), "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "seconds": time.perf_counter() - start, "channels": C, "reps": args.reps, "stack_reps": args.stack_reps,
        "large_reps": args.large_reps, "paper_reps": args.paper_reps,
        "targets": TARGETS,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\n{meta['threads']} threads, load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}, "
          f"{meta['seconds']:.0f} s; wrote {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
