"""INR-GAN generator (Skorokhodov, Ignatyev, Elhoseiny: "Adversarial Generation of Continuous Images", 2021).

A hypernetwork G maps z ~ N(0, I) through a residual MLP to w (the "W space", App. B.2) and one linear output
projection maps w to the parameters theta of an INR F_theta (Sec. 3.1, App. A). The INR is multi-scale
(Sec. 3.3): K blocks, block k evaluated on its own grid; features reach the next block by nearest (or bilinear)
upsampling, Fourier features e(p) = [sin(Wp); cos(Wp)] with W predicted per sample (App. C, Eq. 1) are
concatenated at the start of every block, and the raw coordinates p are concatenated to the input of the other
layers (coordinate skips, App. A). Hidden layers use Factorized Multiplicative Modulation (Sec. 3.2):
W = W_s * sigma(A B) with rank-r factors A, B predicted per sample and W_s shared; biases, the Fourier
matrices and the small coordinate-input and RGB layers are predicted directly. Truncation interpolates w
toward its running average (App. B.3).

Baselines of Tables 1-2 are options of the same code: `arch="inr-latent"` (shared INR conditioned on w by
concatenation), `modulation="full"` (every weight predicted), `modulation="fmm-linear"` (no sigmoid),
`fourier`, `multiscale` (False: every block runs at the output resolution) and `upsample="bilinear"`.

Conventions. Coordinates are pixel centres of [0, 1]^2 in axis order (y, x), as in inrkit.fields.grid and
the paper ("grid locations of [0, 1]^2", Sec. 3.1); they are not remapped to [-1, 1]. Activations are
(B, N, C) row-major and weights (B, in, out), so each per-sample layer is one batched product x @ W over the
whole batch; this is the transpose of the paper's W in R^{n_out x n_in}, so our A is (in, r) and B is
(r, out). The output is the raw linear RGB layer, compared with images in [-1, 1] (StyleGAN2 convention).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inrkit.core.errors import InrkitError
from inrkit.fields.grid import Range, make_grid
from inrkit.models.macs import linear_macs

ARCHS = ("inrgan", "inr-latent")
MODULATIONS = ("fmm", "fmm-linear", "full")
UPSAMPLES = ("nearest", "bilinear")

# App. A: (block resolution, layers, width). 256^2 (LSUN and FFHQ) and FFHQ 1024^2.
PAPER_BLOCKS = {
    256: [[128, 4, 512], [256, 4, 512]],
    1024: [[128, 3, 512], [256, 3, 512], [512, 2, 128], [1024, 2, 32]],
}

SIGMOID_RMS = 0.5416  # sqrt(E[sigmoid(u)^2]) for u ~ N(0, 1): the FMM modulation's scale at init.
BIAS_GAIN = 0.1  # predicted biases start small next to unit-variance pre-activations.


def default_blocks(resolution: int) -> list[list[int]]:
    """The paper's recipe for 256^2 or 1024^2; otherwise the 256^2 recipe scaled (first block at half size)."""
    if resolution in PAPER_BLOCKS:
        return [list(b) for b in PAPER_BLOCKS[resolution]]
    return [[max(resolution // 2, 1), 4, 512], [resolution, 4, 512]]


def generator_config(
    arch: str = "inrgan",  # "inrgan" (hypernetwork) or "inr-latent" (Table 1, first row)
    resolution: int = 256,  # training resolution (square); the last block runs at it
    blocks: list | None = None,  # [(block resolution, layers, width), ...]; None: default_blocks(resolution)
    z_dim: int = 512,  # App. A
    hyper_hidden: int = 1024,  # width of the hypernetwork's residual MLP (App. A)
    hyper_layers: int = 3,  # non-linear layers of that MLP (App. A)
    fmm_rank: int = 10,  # r of Sec. 3.2
    modulation: str = "fmm",  # "fmm" | "fmm-linear" (Table 2, no sigmoid) | "full" (Table 1, no factorization)
    fourier: bool = True,  # Fourier features at each block start (App. C); False: raw coordinates
    fourier_features: list | None = None,  # frequencies (rows of W) per block; None: width // 2 each
    fourier_scale: float = 10.0,  # std of the initial frequencies, radians per unit of the [0, 1] range
    multiscale: bool = True,  # False: every block is evaluated at the output resolution (Table 1 ablation)
    upsample: str = "nearest",  # "nearest" (paper) | "bilinear" (Table 2)
    coord_skip: bool = True,  # concatenate p to the input of every non-first layer of a block (App. A)
    out_channels: int = 3,
    negative_slope: float = 0.2,  # leaky ReLU everywhere (0 gives ReLU)
    w_avg_beta: float = 0.995,  # EMA of w tracked in training, for truncation (App. B.3)
) -> dict:
    """Resolve and check a generator configuration; the result is JSON-able and rebuilds the model alone."""
    _check_choice("arch", arch, ARCHS)
    _check_choice("modulation", modulation, MODULATIONS)
    _check_choice("upsample", upsample, UPSAMPLES)
    blocks = [[int(v) for v in b] for b in (blocks or default_blocks(resolution))]
    _check_blocks(blocks, resolution)
    fourier_features = [int(f) for f in (fourier_features or [max(w // 2, 1) for _, _, w in blocks])]
    if len(fourier_features) != len(blocks) or min(fourier_features) < 1:
        raise InrkitError(f"fourier_features needs one positive count per block ({len(blocks)}).")
    for name, value in (("z_dim", z_dim), ("hyper_hidden", hyper_hidden), ("hyper_layers", hyper_layers),
                        ("fmm_rank", fmm_rank), ("out_channels", out_channels)):
        if int(value) < 1:
            raise InrkitError(f"{name} must be a positive integer, got {value}.")
    return dict(arch=arch, resolution=int(resolution), blocks=blocks, z_dim=int(z_dim),
                hyper_hidden=int(hyper_hidden), hyper_layers=int(hyper_layers), fmm_rank=int(fmm_rank),
                modulation=modulation, fourier=bool(fourier), fourier_features=fourier_features,
                fourier_scale=float(fourier_scale), multiscale=bool(multiscale), upsample=upsample,
                coord_skip=bool(coord_skip), out_channels=int(out_channels),
                negative_slope=float(negative_slope), w_avg_beta=float(w_avg_beta))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InrkitError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}.")


def _check_blocks(blocks: list[list[int]], resolution: int) -> None:
    if not blocks or any(len(b) != 3 or min(b) < 1 for b in blocks):
        raise InrkitError("blocks must be a non-empty list of positive (resolution, layers, width) triples.")
    sizes = [b[0] for b in blocks]
    if sizes != sorted(sizes) or sizes[-1] != resolution:
        raise InrkitError(f"block resolutions {sizes} must not decrease and must end at {resolution}.")


# ---------------------------------------------------------------------------------------------------------
# The INR's layer list, shared by the model, the parameter count and the MAC count.


@dataclass(frozen=True)
class Layer:
    """One INR layer y = [h, c] @ W + b. h: features of the previous layer (on the previous block's coarser
    grid when `coarse`); c: coordinate inputs (e_k(p) at a block start, p for a skip, nothing otherwise)."""

    name: str  # "b{k}.l{l}" or "rgb"
    block: int
    h_dim: int
    c_dim: int
    out_dim: int
    kind: str  # "fmm" (W = W_s * sigma(AB)), "direct" (W predicted) or "shared" (W learned, inr-latent)
    coarse: bool
    latent: bool  # inr-latent: w is concatenated to this layer's input

    @property
    def in_dim(self) -> int:
        return self.h_dim + self.c_dim


def encoding_dim(cfg: dict, block: int) -> int:
    """Width of the coordinate input at the start of a block: [sin; cos] of f frequencies, or (y, x)."""
    return 2 * cfg["fourier_features"][block] if cfg["fourier"] else 2


def inr_layers(cfg: dict) -> list[Layer]:
    """Every layer of F_theta in evaluation order, the RGB output layer last."""
    shared = cfg["arch"] == "inr-latent"
    layers, prev = [], 0
    for k, (_, depth, width) in enumerate(cfg["blocks"]):
        for i in range(depth):
            h_dim = prev if i == 0 else width
            c_dim = encoding_dim(cfg, k) if i == 0 else 2 * cfg["coord_skip"]
            # Sec. 3.2: FMM everywhere but the first (coordinate-input) and last layers, predicted directly.
            direct = cfg["modulation"] == "full" or (h_dim == 0 and not cfg["fourier"])
            kind = "shared" if shared else "direct" if direct else "fmm"
            layers.append(Layer(f"b{k}.l{i}", k, h_dim, c_dim, width, kind, i == 0 and k > 0, i == 0 and shared))
        prev = width
    rgb_kind = "shared" if shared else "direct"
    layers.append(Layer("rgb", len(cfg["blocks"]) - 1, prev, 0, cfg["out_channels"], rgb_kind, False, False))
    return layers


def theta_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of what the hypernetwork predicts, in the order of its output vector."""
    if cfg["arch"] == "inr-latent":
        return {"latent": (cfg["hyper_hidden"],)}
    shapes, r = {}, cfg["fmm_rank"]
    for layer in inr_layers(cfg):
        if cfg["fourier"] and layer.name.endswith(".l0"):
            shapes[f"b{layer.block}.fourier"] = (cfg["fourier_features"][layer.block], 2)
        if layer.kind == "fmm":
            shapes[f"{layer.name}.A"] = (layer.in_dim, r)
            shapes[f"{layer.name}.B"] = (r, layer.out_dim)
        else:
            shapes[f"{layer.name}.weight"] = (layer.in_dim, layer.out_dim)
        shapes[f"{layer.name}.bias"] = (layer.out_dim,)
    return shapes


def shared_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Shapes of the INR's shared (learned, not predicted) parameters: the theta_s of Fig. 6b."""
    shapes = {}
    for layer in inr_layers(cfg):
        if layer.kind in ("fmm", "shared"):
            shapes[f"{layer.name}.weight"] = (layer.in_dim, layer.out_dim)
        if layer.kind == "shared":
            shapes[f"{layer.name}.bias"] = (layer.out_dim,)
        if layer.latent:
            shapes[f"{layer.name}.latent"] = (cfg["hyper_hidden"], layer.out_dim)
        if layer.kind == "shared" and cfg["fourier"] and layer.name.endswith(".l0"):
            shapes[f"b{layer.block}.fourier"] = (cfg["fourier_features"][layer.block], 2)
    return shapes


def _mapping_dims(cfg: dict) -> list[tuple[int, int]]:
    dims = [cfg["z_dim"]] + [cfg["hyper_hidden"]] * cfg["hyper_layers"]
    return list(zip(dims[:-1], dims[1:], strict=True))


def count_params(cfg: dict) -> dict[str, int]:
    """Parameter count by component, in closed form (no model is built)."""
    theta = sum(math.prod(s) for s in theta_shapes(cfg).values())
    head = 0 if cfg["arch"] == "inr-latent" else (cfg["hyper_hidden"] + 1) * theta
    counts = {
        "mapping": sum(i * o + o for i, o in _mapping_dims(cfg)),
        "output_projection": head,
        "inr_shared": sum(math.prod(s) for s in shared_shapes(cfg).values()),
    }
    return counts | {"total": sum(counts.values()), "theta_per_sample": theta}


def _size_hw(resolution) -> tuple[int, int]:
    return (resolution, resolution) if isinstance(resolution, int) else tuple(int(v) for v in resolution)


def block_shapes(cfg: dict, resolution=None) -> list[tuple[int, int]]:
    """Grid (H, W) of every block for an output of `resolution` (int or (H, W)): each block keeps its ratio
    to the training resolution (superresolution: denser; App. G accelerated inference: sparser)."""
    H, W = _size_hw(resolution or cfg["resolution"])
    if not cfg["multiscale"]:
        return [(H, W)] * len(cfg["blocks"])
    R = cfg["resolution"]
    return [(max(1, round(r * H / R)), max(1, round(r * W / R))) for r, _, _ in cfg["blocks"]]


def count_macs(cfg: dict, resolution=None) -> dict[str, int]:
    """MACs for one image by component, in closed form: exactly the products render() executes (checked
    against FlopCounterMode in the tests; see inrkit.models.macs for what is counted)."""
    pixels = [h * w for h, w in block_shapes(cfg, resolution)]
    layers = inr_layers(cfg)
    macs = {
        "mapping": sum(linear_macs(i, o) for i, o in _mapping_dims(cfg)),
        "output_projection": count_params(cfg)["theta_per_sample"] * cfg["hyper_hidden"]
        if cfg["arch"] == "inrgan" else 0,
        "fmm_weights": sum(linear_macs(lay.in_dim, lay.out_dim, cfg["fmm_rank"]) for lay in layers
                           if lay.kind == "fmm"),
        "latent": sum(linear_macs(cfg["hyper_hidden"], lay.out_dim) for lay in layers if lay.latent),
        # [W; W] p for sin and cos at once (_fourier_features): 2 x 2f per pixel
        "fourier": sum(linear_macs(2, 2 * cfg["fourier_features"][k], n) for k, n in enumerate(pixels))
        if cfg["fourier"] else 0,
        "inr": sum(_layer_macs(lay, pixels) for lay in layers),
    }
    return macs | {"total": sum(macs.values())}


def _layer_macs(layer: Layer, pixels: list[int]) -> int:
    """A block's first layer applies its h-part on the coarse grid, before upsampling (see _context)."""
    n = pixels[layer.block]
    h_pixels = pixels[layer.block - 1] if layer.coarse else n
    return linear_macs(layer.h_dim, layer.out_dim, h_pixels) + linear_macs(layer.c_dim, layer.out_dim, n)


def generator_summary(cfg: dict) -> dict:
    """What `--dry-run` prints: the resolved config, parameter count and GMACs per image at training size."""
    params, macs = count_params(cfg), count_macs(cfg)
    return {"config": cfg, "params": params["total"], "params_by_component": params,
            "gmacs_per_image": macs["total"] / 1e9, "macs_by_component": macs}


# ---------------------------------------------------------------------------------------------------------
# The model.


def _kaiming(fan_in: int, slope: float) -> float:
    """Std keeping the second moment through a leaky ReLU layer (He et al. 2015)."""
    return math.sqrt(2.0 / (1.0 + slope**2) / fan_in)


class InrGanGenerator(nn.Module):
    """z -> w (mapping) -> theta (inr_params) -> image (render). See the module docstring for the layout."""

    def __init__(self, config: dict):
        super().__init__()
        unknown = sorted(set(config) - set(inspect.signature(generator_config).parameters))
        if unknown:
            raise InrkitError(f"unknown generator config keys: {', '.join(unknown)}.")
        self.config = generator_config(**config)
        cfg = self.config
        self.layers = inr_layers(cfg)
        num_blocks = len(cfg["blocks"])
        self._block_layers = [[lay for lay in self.layers if lay.block == k] for k in range(num_blocks)]
        self._first = [layers[0] for layers in self._block_layers]
        self.slope = cfg["negative_slope"]
        self.mapping_layers = nn.ModuleList(nn.Linear(i, o) for i, o in _mapping_dims(cfg))
        self.theta_shapes = theta_shapes(cfg)
        self.head = None
        if cfg["arch"] == "inrgan":
            self.head = nn.Linear(cfg["hyper_hidden"], count_params(cfg)["theta_per_sample"])
        self.shared = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(torch.empty(s))
                                        for k, s in shared_shapes(cfg).items()})
        self.register_buffer("w_avg", torch.zeros(cfg["hyper_hidden"]))
        self.reset_parameters()

    # -- initialisation: unit-scale activations at init, whichever modulation is chosen --

    def reset_parameters(self) -> None:
        for fc in self.mapping_layers:
            nn.init.normal_(fc.weight, std=_kaiming(fc.in_features, self.slope))
            nn.init.zeros_(fc.bias)
        if self.head is not None:
            self._init_head()
        for layer in self.layers:
            self._init_shared(layer)
        if "b0_fourier" in self.shared:
            for k in range(len(self.config["blocks"])):
                nn.init.normal_(self.shared[f"b{k}_fourier"])

    @torch.no_grad()
    def _init_head(self, samples: int = 512) -> None:
        """Head outputs ~ N(0, 1) at init, so that _theta_gain sets each parameter's scale. The mapping's
        leaky ReLUs have positive means that residual sums accumulate (E[w^2] ~ 1.5), hence the measured
        second moment, from a fixed-seed batch that leaves the global RNG alone."""
        z = torch.randn(samples, self.config["z_dim"], generator=torch.Generator().manual_seed(0))
        second_moment = self.mapping(z.to(self.w_avg.device)).square().mean()
        nn.init.normal_(self.head.weight, std=float((self.head.in_features * second_moment) ** -0.5))
        nn.init.zeros_(self.head.bias)

    def _init_shared(self, layer: Layer) -> None:
        key = layer.name.replace(".", "_")
        slope = 1.0 if layer.name == "rgb" else self.slope
        if layer.kind == "fmm":  # E[W^2] = E[W_s^2] E[sigma(AB)^2]
            mod_rms = SIGMOID_RMS if self.config["modulation"] == "fmm" else 1.0
            nn.init.normal_(self.shared[f"{key}_weight"], std=_kaiming(layer.in_dim, slope) / mod_rms)
        elif layer.kind == "shared":
            fan_in = layer.in_dim + self.config["hyper_hidden"] * layer.latent
            nn.init.normal_(self.shared[f"{key}_weight"], std=_kaiming(fan_in, slope))
            nn.init.zeros_(self.shared[f"{key}_bias"])
            if layer.latent:
                nn.init.normal_(self.shared[f"{key}_latent"], std=_kaiming(fan_in, slope))

    def _theta_gain(self, key: str) -> float:
        """Fixed scale turning a unit-variance head output into the parameter it stands for."""
        name, part = key.rsplit(".", 1)
        if part == "fourier":
            return self.config["fourier_scale"]
        if part in ("A", "B"):  # (AB)_ij = sum of r products: unit variance
            return self.config["fmm_rank"] ** -0.25
        if part == "bias":
            return BIAS_GAIN
        return _kaiming(self.theta_shapes[key][0], 1.0 if name == "rgb" else self.slope)

    # -- z -> w -> theta --

    def mapping(self, z: torch.Tensor, psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim) -> w (B, hyper_hidden): the hypernetwork before its output projection (App. B.2's W
        space). psi < 1 truncates: w_avg + psi (w - w_avg) (App. B.3, as StyleGAN2)."""
        x = z
        for fc in self.mapping_layers:
            y = F.leaky_relu(fc(x), self.slope)
            x = (x + y) * math.sqrt(0.5) if y.shape == x.shape else y  # residual MLP (App. A)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(x.detach().float().mean(0), 1.0 - self.config["w_avg_beta"])
        if psi != 1.0:
            w_avg = self.w_avg.to(x.dtype)
            x = w_avg + psi * (x - w_avg)
        return x

    def inr_params(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """w (B, hyper_hidden) -> theta: per-sample INR parameters, each (B, *theta_shapes[key]).

        Keys: "b{k}.fourier" (f, 2) frequency matrices in radians per unit; "b{k}.l{i}.A" (in, r) and ".B"
        (r, out) FMM factors; ".weight" (in, out) for directly predicted layers; ".bias" (out,). For
        arch="inr-latent", theta is {"latent": w}. theta is affine in w, so theta interpolation (Fig. 5) is
        linear and render() accepts any such mixture."""
        if self.head is None:
            return {"latent": w}
        with torch.autocast(w.device.type, enabled=False):  # float32: bf16 would blur the frequencies
            raw, start, theta = self.head(w.float()), 0, {}
        for key, shape in self.theta_shapes.items():
            n = math.prod(shape)
            theta[key] = raw[:, start:start + n].view(-1, *shape) * self._theta_gain(key)
            start += n
        return theta

    def layer_weights(self, theta: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Effective (W (B|1, in, out), b (B|1, 1, out)) per layer; W = W_s * sigma(A B) once per sample and
        layer (Sec. 3.2), the rank-r product being one bmm over the batch."""
        out = {}
        for layer in self.layers:
            key = layer.name.replace(".", "_")
            if layer.kind == "fmm":
                mod = torch.bmm(theta[f"{layer.name}.A"], theta[f"{layer.name}.B"])
                mod = torch.sigmoid(mod) if self.config["modulation"] == "fmm" else mod
                weight = self.shared[f"{key}_weight"] * mod
            elif layer.kind == "direct":
                weight = theta[f"{layer.name}.weight"]
            else:
                weight = self.shared[f"{key}_weight"].unsqueeze(0)
            if layer.kind == "shared":
                bias = self.shared[f"{key}_bias"].view(1, 1, -1)
                if layer.latent:  # [.., w] @ W = .. + w @ W_latent: a per-sample bias, not a per-pixel input
                    bias = bias + (theta["latent"] @ self.shared[f"{key}_latent"]).unsqueeze(1)
            else:
                bias = theta[f"{layer.name}.bias"].unsqueeze(1)
            out[layer.name] = (weight, bias)
        return out

    def fourier_matrices(self, theta: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The Fourier matrix W (B, f, 2) of every block (App. C); row norms are frequencies (Fig. 16)."""
        if not self.config["fourier"]:
            return []
        if self.head is not None:
            return [theta[f"b{k}.fourier"] for k in range(len(self.config["blocks"]))]
        batch = theta["latent"].shape[0]
        return [self.shared[f"b{k}_fourier"].mul(self.config["fourier_scale"]).expand(batch, -1, -1)
                for k in range(len(self.config["blocks"]))]

    def fourier_frequencies(self, theta: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per block, (B, f) frequencies |W_i| in radians per unit of the coordinate range (Fig. 16)."""
        return [m.norm(dim=-1) for m in self.fourier_matrices(theta)]

    # -- theta -> image --

    def render(self, theta: dict[str, torch.Tensor], resolution=None, ranges: list[Range] | None = None,
               chunk: int | None = None) -> torch.Tensor:
        """Evaluate F_theta on the pixel-centre grid of `resolution` (int or (H, W); default: training size)
        over `ranges` ([(y_lo, y_hi), (x_lo, x_hi)], default [0, 1]^2) -> (B, C, H, W).

        Block k runs on a grid over the same ranges with r_k * H / R_train pixels per side (block_shapes).
        Layers act per pixel, so a block may be evaluated `chunk` pixels at a time: the same numbers with
        bounded temporaries, for grids too large to hold (B, H*W, width) activations; None (the default)
        evaluates whole grids, which was faster on the shared 2-core CPU and is what a GPU wants."""
        shapes = block_shapes(self.config, resolution)
        weights, fourier = self.layer_weights(theta), self.fourier_matrices(theta)
        device = weights["rgb"][0].device
        h = None
        for k, shape in enumerate(shapes):
            coords = make_grid(shape, ranges).to(device).view(1, -1, 2)
            context = self._context(self._first[k], h, weights, shapes[k - 1], shape) if k else None
            freqs = fourier[k] if fourier else None
            parts = [self._run_block(k, weights, freqs, coords[:, sl], _take(context, sl))
                     for sl in _chunks(coords.shape[1], chunk)]
            h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return h.transpose(1, 2).reshape(h.shape[0], -1, *shapes[-1])

    def _context(self, layer: Layer, h, weights, src, dst):
        """A block's first layer on the previous block's output: h @ W_h + b on the coarse grid, then
        upsampled. A per-pixel linear map commutes with nearest and bilinear upsampling (weights summing to
        one), and the coarse grid has 4x fewer pixels per doubling. Nearest keeps the coarse map and an
        index (gathered per chunk)."""
        weight, bias = weights[layer.name]
        coarse = _affine(bias, h, weight[:, :layer.h_dim])
        if src == dst:
            return coarse, None
        if self.config["upsample"] == "nearest":
            return coarse, _nearest_index(src, dst, coarse.device)
        batch, _, channels = coarse.shape
        img = coarse.view(batch, *src, channels).permute(0, 3, 1, 2)
        up = F.interpolate(img, size=dst, mode="bilinear", align_corners=False)
        return up.permute(0, 2, 3, 1).reshape(batch, dst[0] * dst[1], channels), None

    def _run_block(self, k: int, weights, freqs, coords, context) -> torch.Tensor:
        """Block k on some of its pixels: coords (1, n, 2), context (B, n, width) or None -> (B, n, width),
        or the RGB output (B, n, C) after the last block."""
        x = None
        for layer in self._block_layers[k]:
            weight, bias = weights[layer.name]
            w_h, w_c = weight[:, :layer.h_dim], weight[:, layer.h_dim:]
            if layer.name == "rgb":
                return _affine(bias, x, w_h)
            if layer.name.endswith(".l0"):  # e_k(p) concatenated at the block start (Sec. 3.3)
                encoding = _fourier_features(coords, freqs) if freqs is not None else coords
                x = _affine(bias, encoding, w_c) if context is None else _affine_(context, encoding, w_c)
            elif layer.c_dim:  # coordinate skip: [x, p] @ W + b (App. A)
                x = _affine_(_affine(bias, coords, w_c), x, w_h)
            else:
                x = _affine(bias, x, w_h)
            x = F.leaky_relu(x, self.slope, inplace=True)
        return x

    def forward(self, z: torch.Tensor, psi: float = 1.0, update_w_avg: bool | None = None) -> torch.Tensor:
        """z (B, z_dim) -> image (B, C, R, R) at the training resolution, raw (compare with images in [-1, 1]).
        In training mode w_avg is updated unless update_w_avg=False."""
        update = self.training if update_w_avg is None else update_w_avg
        return self.render(self.inr_params(self.mapping(z, psi=psi, update_w_avg=update)))

    def compile(self, *args, **kwargs) -> None:
        """torch.compile in place, `render` too: sampling, rendering and projection call it directly (it is
        where their time goes), not through forward."""
        super().compile(*args, **kwargs)
        self.render = torch.compile(self.render, *args, **kwargs)

    @torch.no_grad()
    def estimate_w_avg(self, num_samples: int = 10_000, seed: int = 0, batch: int = 1000) -> None:
        """Set w_avg from samples, for a model trained without tracking it."""
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros_like(self.w_avg)
        for start in range(0, num_samples, batch):
            z = torch.randn(min(batch, num_samples - start), self.config["z_dim"], generator=gen)
            total += self.mapping(z.to(self.w_avg.device)).float().sum(0)
        self.w_avg.copy_(total / num_samples)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The paper's two learning-rate groups (App. A: 1e-5 for G, 5e-4 for the INR's shared parameters)."""
        shared = list(self.shared.parameters())
        ids = {id(p) for p in shared}
        return {"hypernetwork": [p for p in self.parameters() if id(p) not in ids], "inr_shared": shared}

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_image(self, resolution=None) -> int:
        """MACs to generate one image at `resolution` (default: the training resolution)."""
        return count_macs(self.config, resolution)["total"]


def lerp_params(theta1: dict, theta2: dict, alpha: float) -> dict:
    """theta = alpha theta1 + (1 - alpha) theta2 (Fig. 5), key by key."""
    return {k: alpha * theta1[k] + (1.0 - alpha) * theta2[k] for k in theta1}


def _fourier_features(coords: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """e(p) = [sin(W p); cos(W p)] (App. C, Eq. 1): coords (1, N, 2), freqs (B, f, 2) -> (B, N, 2f).

    Written as sin([W; W] p + [0; pi/2]): one product and one in-place sine, no concatenation of two
    (B, N, f) halves. Computed in float32 even under autocast: bf16 angles would alias high frequencies."""
    with torch.autocast(coords.device.type, enabled=False):
        f = freqs.shape[1]
        both = torch.cat([freqs, freqs], dim=1).float().transpose(1, 2)  # (B, 2, 2f)
        phase = torch.zeros(1, 1, 2 * f, device=coords.device)
        phase[..., f:] = math.pi / 2
        return torch.baddbmm(phase, coords.float().expand(both.shape[0], -1, -1), both).sin_()


def _affine(base: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """base + x @ W as one batched product; x (B|1, n, in), W (B|1, in, out), base broadcastable."""
    batch = max(base.shape[0], x.shape[0], weight.shape[0])
    return torch.baddbmm(base, x.expand(batch, -1, -1), weight.expand(batch, -1, -1))


def _affine_(y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """y += x @ W in place (no temporary the size of y), unless y must first broadcast over the batch."""
    batch = y.shape[0]
    if batch < max(x.shape[0], weight.shape[0]):
        return _affine(y, x, weight)
    return y.baddbmm_(x.expand(batch, -1, -1).to(y.dtype), weight.expand(batch, -1, -1).to(y.dtype))


def _chunks(n: int, chunk: int | None) -> list[slice]:
    step = n if not chunk else max(1, int(chunk))
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def _take(context, sl: slice):
    """The context rows of one chunk, as a tensor of its own (the layers update it in place): gathered from
    the coarse grid (nearest) or copied from the upsampled map."""
    if context is None:
        return None
    values, index = context
    if index is None:
        return values if sl == slice(0, values.shape[1]) else values[:, sl].clone()
    return values.index_select(1, index[sl])


def _nearest_index(src: tuple[int, int], dst: tuple[int, int], device) -> torch.Tensor:
    iy, ix = (((torch.arange(n, dtype=torch.float64) + 0.5) * m / n).floor().long().clamp_(max=m - 1)
              for m, n in zip(src, dst, strict=True))
    return (iy[:, None] * src[1] + ix[None, :]).view(-1).to(device)
