"""Levels-of-Experts (LoE, Hao et al. 2022): position-dependent linear layers and the LoE field.

A `LoELinear` layer holds a tile of N = tile**dim candidate weight matrices. A point p is placed on
the layer's grid q = A p + b (Eq. 3 and supp. Eq. 8); the grid repeats the tile periodically, and the
point either takes the candidate of its cell (nearest, Eq. 5) or blends the candidates at the cell's
2**dim corners (linear, Eq. 4, extended per axis to bi-/tri-linear).

Two execution paths compute the same numbers:
- generic, `LoEField.forward(coords)`: any coordinates. Points are sorted by candidate once per layer
  and the hidden activations stay in that layer's order (one row permutation between layers, folded
  into the activation), so each candidate multiplies one contiguous block of rows.
- full grid, `LoEField.forward_grid(shape)`: on a power-of-two grid over [0, 1] and with power-of-two
  diagonal grid scales, a layer's candidate index is a fixed group of bits of the pixel index. The
  points are laid out (a permutation of index bits, Z-order for the rest) so that the layer's bits
  are the most significant ones: its rows are then N equal contiguous blocks and the layer is one
  batched matmul on a view, with no gather and no scatter. When the next layer's bits differ, the
  Leaky ReLU between the two writes its output directly in the next layout (a strided elementwise
  pass that replaces the plain activation, not an extra pass).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from inrkit.core.errors import InrkitError
from inrkit.core.precision import autocast_inputs
from inrkit.fields.base import Field, hidden_widths
from inrkit.fields.encoding import PositionalEncoding
from inrkit.fields.grid import Range, grid_on
from inrkit.fields.init import SLOPE, uniform_kaiming_, uniform_kaiming_linear_

BLENDS = ("nearest", "linear")
# "explicit": the grid transforms are given (fit --scales), no rule computes them
ARRANGEMENTS = ("coarse-to-fine", "table6", "fine-to-coarse", "interleaved", "chunked", "random-affine", "explicit")
# Constant Input (no PE) variant: the first layer reads a vector of ones of this size. One is enough:
# with ones as input, layer 1 outputs sum_j W_t[j] + b, a learnable vector per candidate whatever the
# size, and under Kaiming-uniform init its variance is 1/3 for any size. A larger constant only
# adds identical rows that Adam moves in lockstep (a hidden learning-rate multiplier). The paper's
# parameter counts (Table 1: 8.92M vs 9.37M) also imply a first layer with almost no input weights.
CONSTANT_INPUT_DIM = 1

# Linear blending on the full grid makes 2**dim-times-wider temporaries; on CPU it walks the rows in
# chunks of this many temporary elements (4 MiB), because fresh buffers for a whole grid cost page
# faults that measured about as much as the matmuls themselves (2**22 was already 1.5x slower).
BLEND_CHUNK_ELEMENTS = 2**20

Bit = tuple[int, int]  # (coordinate axis, bit level of the pixel index along that axis)


# ---------------------------------------------------------------- blending (Eq. 4, 5)


def corner_offsets(dim: int) -> torch.Tensor:
    """The 2**dim cell corners {0, 1}^dim, (2**dim, dim), in itertools.product order."""
    return torch.tensor(list(itertools.product((0, 1), repeat=dim)), dtype=torch.long)


def blend_coefficients(q: torch.Tensor, tile: int, blend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates and their coefficients at grid positions q (..., dim): index and weight (..., K).

    Candidate (j_1, ..., j_dim) has flat index sum_a j_a * tile**(dim-1-a). K = 1 for nearest and
    2**dim for linear; all other candidates have coefficient 0. `torch.remainder` is the positive
    remainder a - b*floor(a/b) of Eq. 3-5, so negative coordinates wrap around correctly.
    """
    dim = q.shape[-1]
    place = tile ** torch.arange(dim - 1, -1, -1, device=q.device)
    cell = torch.floor(q)
    if blend == "nearest":  # Eq. 5: the candidate floor(q) mod N, coefficient 1
        index = (torch.remainder(cell, tile).long() * place).sum(-1, keepdim=True)
        return index, torch.ones_like(q[..., :1])
    # Eq. 4 per axis: candidates floor(q) and floor(q) + 1 (mod N) get 1 - frac and frac (the hat
    # max(0, 1 - |(q + 1 - j) mod N - 1|)); in several dimensions the coefficient of a cell corner
    # is the product of its per-axis coefficients. As in the paper, candidate j peaks at q = j while
    # nearest gives it the whole cell [j, j + 1): the two blends are half a cell apart.
    frac = (q - cell)[..., None, :]
    corners = corner_offsets(dim).to(q.device)  # (K, dim)
    index = (torch.remainder(cell[..., None, :] + corners, tile).long() * place).sum(-1)
    weight = torch.where(corners.bool(), frac, 1 - frac).prod(-1)
    return index, weight


def grid_positions(coords: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """q = A p + b (supp. Eq. 8) for coords (P, dim) and A (..., dim, dim), b (..., dim) -> (..., P, dim).

    Written as a short sum over the input axes (not a matmul) so that one layer and a stack of layers
    round identically, and a power-of-two diagonal A gives exact grid positions.
    """
    q = b[..., None, :]
    for j in range(coords.shape[-1]):
        q = q + coords[:, j, None] * A[..., None, :, j]
    return q


def rolled_candidates(tile: int, dim: int) -> torch.Tensor:
    """(N, 2**dim): the candidate at corner c of a cell whose own candidate is t (digits t_a + c_a mod tile)."""
    digits = torch.tensor(list(itertools.product(range(tile), repeat=dim)), dtype=torch.long)  # (N, dim)
    place = tile ** torch.arange(dim - 1, -1, -1)
    rolled = torch.remainder(digits[:, None, :] + corner_offsets(dim), tile)  # (N, K, dim)
    return (rolled * place).sum(-1)


# ---------------------------------------------------------------- arrangements (supp. Tables 5-6)


def arrangement(
    name: str, n_layers: int, tile: int | list[int], dim: int, resolution: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer grid transforms (A (dim, dim), b (dim,)) of q = A p + b for p in [0, 1]^dim.

    `tile` is the candidates per axis of every layer, or a list with one per layer. The multi-scale rules cap
    each scale at `resolution` (Table 6's dagger: the grid pitch never finer than the pixel pitch).
    """
    tiles = list(tile) if isinstance(tile, (list, tuple)) else [tile] * n_layers
    if len(tiles) != n_layers:
        raise InrkitError(f"{len(tiles)} tile sizes given for {n_layers} LoE layers.")
    eye = torch.eye(dim)
    zero = torch.zeros(dim)
    if name == "coarse-to-fine":
        # Each layer's tile subdivides the previous layer's cells: s_i = N_1 ... N_i, so layer 1 covers
        # [0, 1] exactly once. Equal tiles give Table 9's N^i (and supp. A's 2^i); tiles 2, 4, 4, 4, 4 give
        # supp. C's video grid resolutions 2, 8, 32, 128, 512.
        scales = [min(math.prod(tiles[:i]), resolution) for i in range(1, n_layers + 1)]
    elif name == "table6":
        # Supp. B, Table 6 (image fitting, 4x4 tiles): A_1 = 4 I, A_i = (4^(i-1) x 2) I for i > 1, i.e.
        # 4, 8, 32, 128, 512, 2048, 8192; here s_1 = N_1 and s_i = 2 N_1 ... N_(i-1).
        scales = [min(tiles[0] if i == 1 else 2 * math.prod(tiles[: i - 1]), resolution)
                  for i in range(1, n_layers + 1)]
    elif name == "fine-to-coarse":
        scales = [min(math.prod(tiles[:i]), resolution) for i in range(n_layers, 0, -1)]
    elif name == "interleaved":  # one grid cell per pixel: neighbouring pixels cycle through the tile
        scales = [resolution] * n_layers
    elif name == "chunked":  # the tile covers [0, 1] once in every layer: one MLP per chunk
        scales = tiles
    elif name == "explicit":
        raise InrkitError("the explicit LoE arrangement needs its per-layer grid scales (fit --scales).")
    elif name == "random-affine":
        # Table 6 draws A ~ N(0, 256^2) for an 8192-pixel image with 4x4 tiles; we keep that ratio,
        # sigma = resolution / 32, for any resolution (the paper gives no rule).
        gen = torch.Generator().manual_seed(seed)
        sigma = resolution / 32
        return [
            (torch.randn(dim, dim, generator=gen) * sigma, torch.rand(dim, generator=gen))
            for _ in range(n_layers)
        ]
    else:
        raise InrkitError(f"unknown LoE arrangement {name!r}; expected one of {', '.join(ARRANGEMENTS)}.")
    return [(float(s) * eye, zero.clone()) for s in scales]


_arrangement = arrangement  # LoEField's parameter `arrangement` shadows the function inside __init__


# ---------------------------------------------------------------- fused matmul kernels (autograd)


def _row_chunks(n_rows: int, elements_per_row: int, device: torch.device):
    """Slices of at most BLEND_CHUNK_ELEMENTS temporary elements (all rows at once off the CPU)."""
    if device.type != "cpu":
        yield slice(0, n_rows)
        return
    step = max(1, BLEND_CHUNK_ELEMENTS // elements_per_row)
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _segments(counts: list[int]):
    """(candidate, row slice) of each non-empty block of candidate-sorted rows."""
    start = 0
    for t, n in enumerate(counts):
        if n:
            yield t, slice(start, start + n)
        start += n


def _segment_chunks(counts: list[int], elements_per_row: int, device: torch.device):
    """(candidate, row slice) of each segment, long segments split as `_row_chunks` does."""
    for t, rows in _segments(counts):
        for sub in _row_chunks(rows.stop - rows.start, elements_per_row, device):
            yield t, slice(rows.start + sub.start, rows.start + sub.stop)


class _SegmentBlendedMatmul(torch.autograd.Function):
    """Linear blending (Eq. 4) on rows sorted by candidate: out = bias + sum_k w[:, k] * (x @ corners[t, k]).

    Rows are sorted by the candidate t of their own cell (floor(q) mod N, the nearest candidate), counts[t]
    rows each (the full grid's equal blocks are the case of equal counts). The other corners of such a cell
    are the rolled candidates of t, so corners (N, K, in, out) = weight[rolled_candidates] serves every row
    of segment t. Forward blends on the input side, out = [w_1 x, ..., w_K x] @ [W_1; ...; W_K], so the
    blend is inside the matmul's sum; backward blends on the output side, grad_x = [w_1 g, ..., w_K g] @
    [W_1^T; ...] and grad_W_k = x^T (w_k g). Long segments go through in row chunks, so the (rows, K *
    channels) temporaries are never materialized for the whole grid. One sort per layer, not one per
    corner. The coefficients w are constants (they depend only on the coordinates) and get no gradient.
    """

    @staticmethod
    def forward(ctx, x, corners, bias, w, counts):
        n, k, c, d = corners.shape
        x, w = x.contiguous(), w.contiguous()
        stacked = corners.reshape(n, k * c, d)
        out = x.new_empty(x.shape[0], d)
        for t, rows in _segment_chunks(counts, k * c, x.device):
            z = (w[rows, :, None] * x[rows, None, :]).view(-1, k * c)
            torch.addmm(bias, z, stacked[t], out=out[rows])
        ctx.save_for_backward(x, corners, w)
        ctx.counts = counts
        return out

    @staticmethod
    def backward(ctx, grad):
        x, corners, w = ctx.saved_tensors
        n, k, c, d = corners.shape
        side_by_side = corners.permute(0, 2, 1, 3).reshape(n, c, k * d)
        grad = grad.contiguous()
        grad_x = torch.empty_like(x)
        grad_side = torch.zeros_like(side_by_side)
        for t, rows in _segment_chunks(ctx.counts, k * d, x.device):
            grad_y = (w[rows, :, None] * grad[rows, None, :]).view(-1, k * d)
            torch.mm(grad_y, side_by_side[t].T, out=grad_x[rows])
            grad_side[t].addmm_(x[rows].T, grad_y)
        grad_corners = grad_side.view(n, c, k, d).permute(0, 2, 1, 3)
        return grad_x, grad_corners, grad.sum(0), None, None


class _SegmentMatmul(torch.autograd.Function):
    """Rows sorted by candidate, counts[t] rows for candidate t: out[rows_t] = x[rows_t] @ weight[t] + bias."""

    @staticmethod
    def forward(ctx, x, weight, bias, counts):
        x = x.contiguous()
        out = x.new_empty(x.shape[0], weight.shape[2])
        for t, rows in _segments(counts):
            if bias is None:
                torch.mm(x[rows], weight[t], out=out[rows])
            else:
                torch.addmm(bias, x[rows], weight[t], out=out[rows])
        ctx.save_for_backward(x, weight)
        ctx.counts = counts
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = x.new_empty(x.shape) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        for t, rows in _segments(ctx.counts):
            if grad_x is not None:
                torch.mm(grad[rows], weight[t].T, out=grad_x[rows])
            if grad_w is not None:
                torch.mm(x[rows].T, grad[rows], out=grad_w[t])
        grad_b = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class _PermuteRows(torch.autograd.Function):
    """x[index] for a permutation `index`; the backward is the inverse gather, not a scatter-add."""

    @staticmethod
    def forward(ctx, x, index, inverse):
        ctx.save_for_backward(inverse)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


class _LeakyReluPermute(torch.autograd.Function):
    """leaky_relu(h)[index] for a permutation: one gather plus an in-place activation each way."""

    @staticmethod
    def forward(ctx, h, index, inverse):
        out = h.index_select(0, index)
        torch.ops.aten.leaky_relu_(out, SLOPE)
        ctx.save_for_backward(h, inverse)
        return out

    @staticmethod
    def backward(ctx, grad):
        h, inverse = ctx.saved_tensors
        grad_h = grad.index_select(0, inverse)
        torch.ops.aten.leaky_relu_backward.grad_input(grad_h, h, SLOPE, False, grad_input=grad_h)
        return grad_h, None, None


class _LeakyReluRelayout(torch.autograd.Function):
    """leaky_relu(h) written in another bit layout of the grid points, in the same elementwise pass.

    The rows of h (P, C) are viewed as a tensor with one axis per block of index bits (`sizes`);
    `perm` orders those axes as in the destination layout.
    """

    @staticmethod
    def forward(ctx, h, sizes, perm):
        h = h.contiguous()
        src = h.view(*sizes, h.shape[1]).permute(*perm, len(perm))
        out = h.new_empty(h.shape)
        torch.ops.aten.leaky_relu.out(src, SLOPE, out=out.view(src.shape))
        ctx.save_for_backward(h)
        ctx.sizes, ctx.perm = sizes, perm
        return out

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        sizes, perm = ctx.sizes, ctx.perm
        back = sorted(range(len(perm)), key=perm.__getitem__)
        grad_src = grad.contiguous().view(*[sizes[i] for i in perm], h.shape[1]).permute(*back, len(perm))
        grad_h = h.new_empty(h.shape)
        hv = h.view(*sizes, h.shape[1])
        torch.ops.aten.leaky_relu_backward.grad_input(
            grad_src, hv, SLOPE, False, grad_input=grad_h.view(hv.shape)
        )
        return grad_h, None, None


def _inverse_permutation(index: torch.Tensor) -> torch.Tensor:
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(index.numel(), device=index.device)
    return inverse


def sorted_linear(x: torch.Tensor, weight: torch.Tensor, index: torch.Tensor, bias=None) -> torch.Tensor:
    """x[p] @ weight[index[p]] (+ bias) for any candidate per row: sort, block matmuls, unsort."""
    order = torch.argsort(index.int(), stable=True)
    counts = torch.bincount(index, minlength=weight.shape[0]).tolist()
    inverse = _inverse_permutation(order)
    x, weight, bias = autocast_inputs(x, weight, bias)  # autocast does not see the hand-written kernels
    y = _SegmentMatmul.apply(_PermuteRows.apply(x, order, inverse), weight, bias, counts)
    return _PermuteRows.apply(y, inverse, order)


def sorted_blended_linear(x, corners, bias, index: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Linear blending for any coordinates: rows sorted by their own cell's candidate `index` (P,), corner
    coefficients w (P, K), corners (N, K, in, out) as `_SegmentBlendedMatmul` takes them."""
    order = torch.argsort(index.int(), stable=True)
    counts = torch.bincount(index, minlength=corners.shape[0]).tolist()
    inverse = _inverse_permutation(order)
    x, corners, bias, w = autocast_inputs(x, corners, bias, w[order])
    y = _SegmentBlendedMatmul.apply(_PermuteRows.apply(x, order, inverse), corners, bias, w, counts)
    return _PermuteRows.apply(y, inverse, order)


# ---------------------------------------------------------------- the LoE layer


class LoELinear(nn.Module):
    """Linear layer whose weight is a function of the position (Sec. 3): psi(p) x + bias.

    weight (N, in, out) holds the N = tile**dim candidates; A (dim, dim) and b (dim,) are buffers, so
    the grid transform is saved with the weights.
    """

    def __init__(self, in_features, out_features, tile, dim, A, b, blend="nearest"):
        super().__init__()
        if blend not in BLENDS:
            raise InrkitError(f"unknown LoE blend {blend!r}; expected one of {', '.join(BLENDS)}.")
        if tile < 2:
            raise InrkitError(f"an LoE tile needs at least 2 candidates per axis (Sec. 3: N > 1), got {tile}.")
        self.in_features, self.out_features = in_features, out_features
        self.tile, self.dim, self.blend_mode = tile, dim, blend
        self.weight = nn.Parameter(torch.empty(tile**dim, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))  # zero biases (supp. A)
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32).reshape(dim, dim).clone())
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float32).reshape(dim).clone())
        self.register_buffer("corner_candidates", rolled_candidates(tile, dim), persistent=False)
        uniform_kaiming_(self.weight, in_features)  # supp. A, as every Leaky-ReLU field (inrkit.fields.init)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, tile={self.tile}, dim={self.dim}, blend={self.blend_mode}"

    def grid_position(self, coords: torch.Tensor) -> torch.Tensor:
        """q = A p + b (supp. Eq. 8) for coords (P, dim)."""
        return grid_positions(coords, self.A.to(coords.dtype), self.b.to(coords.dtype))

    def blend(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate indices and coefficients (P, K) at coords (P, dim) (Eq. 4 or 5)."""
        return blend_coefficients(self.grid_position(coords), self.tile, self.blend_mode)

    def forward(self, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """x (P, in) at coords (P, dim) -> (P, out), any coordinates."""
        index, weight = self.blend(coords)
        if self.blend_mode == "nearest":
            return sorted_linear(x, self.weight, index[:, 0], self.bias)
        # corner 0 of a cell is its own candidate floor(q) mod N (see blend_coefficients)
        return sorted_blended_linear(x, self.corners(), self.bias, index[:, 0], weight)

    def corners(self) -> torch.Tensor:
        """(N, K, in, out): for each candidate t, the candidates at the corners of a cell whose own is t."""
        return self.weight[self.corner_candidates]

    def forward_blocks(self, x: torch.Tensor, corner_weight: torch.Tensor | None = None) -> torch.Tensor:
        """x (P, in) whose rows come in N equal blocks, block t all on candidate t -> (P, out).

        This is the full-grid path: one batched matmul on a view of x, no gather or scatter.
        Linear blending also needs the corner coefficients (P, 2**dim) in the same row order; the
        corners share the block structure with rolled candidates, so the corner weights of a block
        are concatenated and one matmul per chunk of rows covers every corner (Eq. 4).
        """
        n = self.weight.shape[0]
        if self.blend_mode == "nearest":  # Eq. 5
            blocks = x.contiguous().view(n, -1, self.in_features)
            return torch.baddbmm(self.bias, blocks, self.weight).view(-1, self.out_features)
        counts = [x.shape[0] // n] * n  # equal blocks are segments of equal length
        return _SegmentBlendedMatmul.apply(*autocast_inputs(x, self.corners(), self.bias, corner_weight), counts)

    def grid_bits(self, shape: tuple[int, ...]) -> tuple[Bit, ...] | None:
        """The pixel-index bits that hold this layer's candidate on the [0, 1] grid of `shape`.

        With A = diag(2**k_a), b = 0 and n_a = 2**m_a pixels, the grid position of pixel i is
        2**k_a (i + 1/2) / 2**m_a, so floor(q) mod tile are bits m_a - k_a ... m_a - k_a + log2(tile) - 1
        of i (most significant first, axis by axis, as the candidate index). None when the
        structure does not hold (non-power-of-two sizes or scales, offsets, rotations, or a grid
        pitch finer than a pixel).
        """
        bits_per_axis = self.tile.bit_length() - 1
        A, b = self.A.double().cpu(), self.b.double().cpu()
        if 2**bits_per_axis != self.tile or b.abs().max() > 0 or not torch.equal(A, torch.diag(A.diag())):
            return None
        bits = []
        for axis, (n, scale) in enumerate(zip(shape, A.diag().tolist(), strict=True)):
            levels, k = n.bit_length() - 1, math.log2(scale) if scale > 0 else -1.0
            if 2**levels != n or k != int(k) or not bits_per_axis <= k <= levels:
                return None
            low = levels - int(k)
            bits += [(axis, low + j) for j in reversed(range(bits_per_axis))]
        return tuple(bits)


# ---------------------------------------------------------------- grid layouts for the fast path


def _morton_bits(shape: tuple[int, ...]) -> list[Bit]:
    """All index bits of a power-of-two grid, most significant first, axes interleaved (Z-order)."""
    levels = [n.bit_length() - 1 for n in shape]
    return [(a, lv) for lv in reversed(range(max(levels))) for a in range(len(shape)) if lv < levels[a]]


def _raster_bits(shape: tuple[int, ...]) -> list[Bit]:
    """The bit layout of raster order: axis 0's bits most significant first, then axis 1's, ..."""
    return [(a, lv) for a, n in enumerate(shape) for lv in reversed(range(n.bit_length() - 1))]


def _relayout_dims(src: list[Bit], dst: list[Bit]) -> tuple[list[int], list[int]]:
    """View sizes of the rows in layout `src` (one axis per run of bits kept together in `dst`) and
    the order of those axes in `dst`."""
    where = {bit: i for i, bit in enumerate(dst)}
    blocks: list[list[Bit]] = []
    for bit in src:
        if blocks and where[bit] == where[blocks[-1][-1]] + 1:
            blocks[-1].append(bit)
        else:
            blocks.append([bit])
    perm = sorted(range(len(blocks)), key=lambda i: where[blocks[i][0]])
    return [2 ** len(block) for block in blocks], perm


def leaky_relu_relayout(h: torch.Tensor, src: list[Bit], dst: list[Bit]) -> torch.Tensor:
    """leaky_relu(h) for grid rows in layout `src`, returned in layout `dst`, in one elementwise pass."""
    if torch.compiler.is_compiling():  # plain ops, which torch.compile fuses into one pass by itself
        return permute_grid_rows(F.leaky_relu(h, SLOPE), src, dst)
    sizes, perm = _relayout_dims(src, dst)
    return _LeakyReluRelayout.apply(h, sizes, perm)


def permute_grid_rows(t: torch.Tensor, src: list[Bit], dst: list[Bit]) -> torch.Tensor:
    """Rows of t (P, k) for grid points in layout `src`, returned in layout `dst` (one strided copy)."""
    sizes, perm = _relayout_dims(src, dst)
    return t.reshape(*sizes, t.shape[-1]).permute(*perm, len(perm)).reshape(t.shape)


class GridPhase:
    """Consecutive LoE layers whose candidates are the same index bits, with the point layout
    (bits most significant first) that puts those bits on top."""

    def __init__(self, layout: list[Bit], n_layers: int):
        self.layout, self.n_layers = layout, n_layers

    def __repr__(self) -> str:
        return f"GridPhase(top={self.layout[:4]}..., n_layers={self.n_layers})"


def plan_grid_phases(groups: list[tuple[Bit, ...]], shape: tuple[int, ...]) -> list[GridPhase]:
    """One phase per run of layers with the same candidate bits; its layout puts those bits on top
    and keeps the other bits in Z-order.

    Keeping a layer's bits on top makes its rows N contiguous blocks: one bmm. Bits lower down split
    a candidate's rows into many short runs, which measured 1.05-1.2x a dense matmul on an idle CPU
    and up to 2.7x on a busy one; moving the bits up instead costs one strided elementwise pass, done
    inside the Leaky ReLU between phases.
    """
    phases: list[GridPhase] = []
    previous = None
    for group in groups:
        if group == previous:
            phases[-1].n_layers += 1
        else:
            rest = [bit for bit in _morton_bits(shape) if bit not in group]
            phases.append(GridPhase(list(group) + rest, 1))
        previous = group
    return phases


# ---------------------------------------------------------------- the LoE field


class LoEField(Field):
    """Levels-of-Experts coordinate MLP (Sec. 3, supp. A): `loe_layers` position-dependent layers
    (default depth - 1), then plain linear layers; Leaky ReLU 0.2 between layers; NeRF positional
    encoding input, or a constant input when frequencies == 0 (Table 1, "Constant Input (no PE)").

    Per layer (supp. B, C): `widths` the hidden output channels (depth - 1 values, else `width`), `tiles` the
    candidates per axis of each LoE layer (loe_layers values, else `tile`), `affines` the grid transforms
    (else the `arrangement` rule). A config without widths or tiles (artifacts before them) has one of each.
    """

    def __init__(
        self,
        in_dim: int = 2,
        out_dim: int = 1,
        width: int = 64,
        depth: int = 10,
        tile: int = 2,
        blend: str = "nearest",
        arrangement: str = "coarse-to-fine",
        resolution: int = 512,
        frequencies: int = 8,
        seed: int = 0,
        loe_layers: int | None = None,
        affines: list | None = None,
        widths: list[int] | None = None,
        tiles: list[int] | None = None,
    ):
        super().__init__()
        loe_layers = depth - 1 if loe_layers is None else loe_layers
        if depth < 1 or not 0 <= loe_layers <= depth - 1:
            raise InrkitError(
                f"an LoE field needs depth >= 1 and 0 <= loe_layers <= depth - 1, got {depth} and {loe_layers}."
            )
        hidden = hidden_widths(width, depth, widths)
        per_layer_tiles = [tile] * loe_layers if tiles is None else [int(t) for t in tiles]
        if len(per_layer_tiles) != loe_layers:
            raise InrkitError(f"per-layer tiles need one value per LoE layer ({loe_layers}), got "
                              f"{len(per_layer_tiles)}: {per_layer_tiles}.")
        if affines is None:  # `seed` only draws the random-affine arrangement
            affines = _arrangement(arrangement, loe_layers, per_layer_tiles, in_dim, resolution, seed)
        if len(affines) != loe_layers:
            raise InrkitError(f"{len(affines)} grid transforms given for {loe_layers} LoE layers.")
        self.in_dim, self.out_dim, self.tiles, self.blend = in_dim, out_dim, per_layer_tiles, blend
        self.encoding = PositionalEncoding(in_dim, frequencies) if frequencies > 0 else None
        dims = [self.encoding.out_dim if self.encoding else CONSTANT_INPUT_DIM] + hidden + [out_dim]
        self.loe = nn.ModuleList(
            LoELinear(dims[i], dims[i + 1], per_layer_tiles[i], in_dim, A, b, blend)
            for i, (A, b) in enumerate(affines)
        )
        self.plain = nn.ModuleList(
            uniform_kaiming_linear_(nn.Linear(dims[i], dims[i + 1])) for i in range(loe_layers, depth)
        )
        # grid_plan per (shape, ranges): planning reads the grid transforms on the host, which from a GPU waits
        # for it; a fit asks for the same plan every step. Loading other transforms forgets the plans.
        self.plans: dict = {}
        self.register_load_state_dict_post_hook(lambda module, keys: module.plans.clear())
        self.config = {
            "arch": "loe", "in_dim": in_dim, "out_dim": out_dim, "width": width, "depth": depth,
            "tile": tile, "blend": blend, "arrangement": arrangement, "resolution": resolution,
            "frequencies": frequencies, "seed": seed, "loe_layers": loe_layers,
            "affines": [[layer.A.tolist(), layer.b.tolist()] for layer in self.loe],
        }  # fmt: skip
        if widths is not None:  # written only when given: an artifact without them has one width, one tile
            self.config["widths"] = hidden
        if tiles is not None:
            self.config["tiles"] = per_layer_tiles

    @classmethod
    def from_config(cls, cfg: dict) -> LoEField:
        cfg = {k: v for k, v in cfg.items() if k != "arch"}
        return cls(**cfg)

    def macs_per_sample(self) -> int:
        """Linear-layer MACs per point; linear blending multiplies every corner (Table 1: 4x in 2-D)."""
        corners = 2**self.in_dim if self.blend == "linear" else 1
        loe = sum(layer.in_features * layer.out_features for layer in self.loe)
        return corners * loe + sum(layer.in_features * layer.out_features for layer in self.plain)

    def _input(self, coords: torch.Tensor) -> torch.Tensor:
        if self.encoding is None:
            return coords.new_ones(coords.shape[0], CONSTANT_INPUT_DIM)
        return self.encoding(coords)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """The plain layers after the LoE layers (x is already activated)."""
        for i, layer in enumerate(self.plain):
            x = layer(x)
            if i + 1 < len(self.plain):
                x = F.leaky_relu(x, SLOPE)
        return x

    # -- generic path: any coordinates

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (..., in_dim) -> (..., out_dim)."""
        lead = coords.shape[:-1]
        flat = coords.reshape(-1, self.in_dim).to(self.plain[0].weight.dtype)
        out = self._forward_sorted(flat) if self.loe else self._head(self._input(flat))
        return out.reshape(*lead, self.out_dim)

    def _forward_sorted(self, flat: torch.Tensor) -> torch.Tensor:
        """Points sorted by candidate per layer, activations kept in that order.

        All layers' candidates, sort orders and block sizes come from a few batched index ops. Nearest
        sorts by the candidate (Eq. 5); linear by the cell's own candidate, whose rolled candidates are
        the other corners, with each row's corner coefficients (Eq. 4) permuted into the layer's order.
        """
        A = torch.stack([layer.A for layer in self.loe]).to(flat.dtype)
        b = torch.stack([layer.b for layer in self.loe]).to(flat.dtype)
        q = grid_positions(flat, A, b)  # (L, P, dim)
        if len(set(self.tiles)) == 1:
            index = blend_coefficients(q, self.tiles[0], "nearest")[0][..., 0]
        else:  # per-layer tiles (supp. C: 2^3, then 4^3)
            index = torch.stack([blend_coefficients(q[i], t, "nearest")[0][..., 0] for i, t in enumerate(self.tiles)])
        n_layers = index.shape[0]
        sizes = [layer.weight.shape[0] for layer in self.loe]  # candidates per layer
        # (L, P): layer i's row j is point orders[i, j] (int32 keys sort about 30% faster)
        orders = torch.argsort(index.int(), dim=1, stable=True)
        offsets = torch.tensor([sum(sizes[:i]) for i in range(n_layers)], device=index.device)
        flat_counts = torch.bincount((index + offsets[:, None]).flatten(), minlength=sum(sizes)).tolist()
        counts = [flat_counts[o : o + n] for o, n in zip(offsets.tolist(), sizes, strict=True)]
        positions = torch.arange(index.shape[1], device=index.device).expand_as(orders)
        inverses = torch.empty_like(orders).scatter_(1, orders, positions)
        to_next = torch.gather(inverses[:-1], 1, orders[1:])  # layer i rows -> layer i+1 order
        from_next = torch.gather(inverses[1:], 1, orders[:-1])
        x = self._input(flat[orders[0]])
        for i, layer in enumerate(self.loe):
            if self.blend == "nearest":
                h = _SegmentMatmul.apply(*autocast_inputs(x, layer.weight, layer.bias), counts[i])
            else:
                w = blend_coefficients(q[i, orders[i]], layer.tile, "linear")[1]  # (P, K) in layer i's order
                h = _SegmentBlendedMatmul.apply(*autocast_inputs(x, layer.corners(), layer.bias, w), counts[i])
            if i + 1 < n_layers:
                x = _LeakyReluPermute.apply(h, to_next[i], from_next[i])
            else:
                x = F.leaky_relu(h, SLOPE)
        return self._head(x)[inverses[-1]]

    # -- full-grid path

    def grid_plan(self, shape: tuple[int, ...], ranges: list[Range] | None = None) -> list[GridPhase] | None:
        """Phases of the structured full-grid path, or None where it does not apply."""
        if ranges is not None and any(tuple(r) != (0.0, 1.0) for r in ranges):
            return None
        if len(shape) != self.in_dim or not self.loe:
            return None
        groups = [layer.grid_bits(tuple(shape)) for layer in self.loe]
        if any(g is None for g in groups):
            return None
        return plan_grid_phases(groups, tuple(shape))

    def forward_grid(self, shape: tuple[int, ...], ranges: list[Range] | None = None) -> torch.Tensor:
        """The pixel-centre grid of `shape` -> (*shape, out_dim) in raster order (fast where possible)."""
        shape = tuple(shape)
        key = (shape, tuple(map(tuple, ranges)) if ranges is not None else None)
        if key not in self.plans:
            self.plans[key] = self.grid_plan(shape, ranges)
        phases = self.plans[key]
        if phases is None:
            return super().forward_grid(shape, ranges)
        device, dtype = self.plain[0].weight.device, self.plain[0].weight.dtype
        grid = grid_on(shape, None, device, dtype).reshape(-1, self.in_dim)
        raster = _raster_bits(shape)
        x = self._input(permute_grid_rows(grid, raster, phases[0].layout))  # tiny input, into layout 1
        layers = iter(self.loe)
        for p, phase in enumerate(phases):
            coords = permute_grid_rows(grid, raster, phase.layout) if self.blend == "linear" else None
            for i in range(phase.n_layers):
                layer = next(layers)
                corner_weight = layer.blend(coords)[1] if coords is not None else None
                h = layer.forward_blocks(x, corner_weight)
                if i + 1 == phase.n_layers and p + 1 < len(phases):
                    x = leaky_relu_relayout(h, phase.layout, phases[p + 1].layout)
                else:
                    x = F.leaky_relu(h, SLOPE)
        out = self._head(x)  # (P, out_dim), tiny: back to raster order
        return permute_grid_rows(out, phases[-1].layout, raster).reshape(*shape, self.out_dim)
