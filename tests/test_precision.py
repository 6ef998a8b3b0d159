"""--precision and --compile (inrkit/core/precision.py): bf16 autocast computes in bf16 where it should, keeps
master weights, optimizer states and loss reductions in fp32, and stays close to fp32, for every trainer's step
and for the renderers; fp32 is the unchanged default; --compile works or fails in one sentence. The CUDA tests
skip without a GPU."""

import copy
import dataclasses
import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from inrkit.core import precision as precision_mod
from inrkit.core.errors import InrkitError
from inrkit.core.precision import FP32, Precision, resolve_precision
from inrkit.fields import build_field
from inrkit.models.discriminator import Discriminator, discriminator_config
from inrkit.models.functa import SpatialFuncta
from inrkit.models.functa_family import render_codes as functa_render_codes
from inrkit.models.inrgan import InrGanGenerator, generator_config
from inrkit.models.sampling import render_theta, seed_params
from inrkit.stages.fit import field_config
from inrkit.train.checkpoint import load_state, save_state
from inrkit.train.fitting import FitObjective
from inrkit.train.gan import GanObjective
from inrkit.train.metalearn import MetaObjective

BF16 = Precision("bf16", "cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
MATMULS = {"linear", "mm", "bmm", "addmm", "baddbmm", "baddbmm_", "matmul", "conv2d"}
# bf16 keeps 8 significant bits (relative rounding 2^-9): a one-step loss moves by ~1e-3 of itself, far above
# fp32's ~1e-7 and far below what a wrong cast (no cast at all: 0; fp32 values read as integers, or a loss reduced
# in bf16 over thousands of terms) would give.
FP32_NOISE, BF16_BOUND = 1e-5, 3e-2
# A sine network (SIREN, functa) multiplies each pre-activation's rounding by w0 before the sine (SIREN's w0 = 30:
# ~30 x 2^-9, a few percent per layer): the intrinsic cost of bf16 for them, which tf32 avoids.
SINE_BOUND = 0.1


class MatmulDtypes(TorchFunctionMode):
    """Records the dtype of every matmul and convolution result computed inside it (autocast casts below this
    level, so results show what the kernels computed in; LoE's hand-written kernels are seen too)."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in MATMULS and isinstance(out, torch.Tensor):
            self.dtypes.append(out.dtype)
        return out


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def assert_bf16_close(bf16: dict, fp32: dict, names) -> None:
    """Each value differs from fp32 by more than fp32 noise and less than bf16's bound, and is a float32 loss."""
    for name in names:
        assert bf16[name].dtype == torch.float32, name
        assert FP32_NOISE < relative(bf16[name], fp32[name]) < BF16_BOUND, (name, bf16[name], fp32[name])


def assert_master_weights_fp32(modules, optimizers) -> None:
    for module in modules:
        assert all(p.dtype == torch.float32 for p in module.parameters())
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in module.parameters())
    for opt in optimizers:
        states = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.numel() > 1]
        assert states and all(v.dtype == torch.float32 for v in states)


# ---------------------------------------------------------------- resolving --precision


def test_auto_is_fp32_on_cpu_and_fp32_changes_nothing():
    p = resolve_precision("auto", "cpu")
    assert p == FP32 and not p.autocasting and p.dtype == torch.float32 and not p.channels_last
    with p.autocast():
        assert not torch.is_autocast_enabled("cpu")
    x = torch.randn(2, 3, 4, 4)
    assert p.images(x) is x


def test_bf16_and_tf32_on_cpu():
    bf16, tf32 = resolve_precision("bf16", "cpu"), resolve_precision("tf32", "cpu")
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not tf32.autocasting and not tf32.channels_last  # TF32 is a CUDA matmul mode: fp32 on a CPU


def test_unknown_precision_is_one_sentence():
    with pytest.raises(InrkitError, match=r"^unknown --precision 'fp16'; choose auto, fp32, bf16, tf32\.$"):
        resolve_precision("fp16", "cpu")


# ---------------------------------------------------------------- one step of each trainer, fp32 against bf16


def fit_objective(arch: str, blend: str, precision: Precision, batch_pixels: int = 0) -> FitObjective:
    torch.manual_seed(0)
    target = torch.rand(16, 16, 3)
    field = build_field(field_config(arch, 2, 3, 16, 16, 4, 2, blend, "coarse-to-fine", 4, 30.0, 0))
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return FitObjective(field=field, target=target, optimizer=opt, scheduler=sched, batch_pixels=batch_pixels,
                        seed=0, snapshot_hook=lambda pos: None, precision=precision)


@pytest.mark.parametrize("arch,blend,batch_pixels", [("siren", "nearest", 0), ("pe", "nearest", 0),
                                                      ("loe", "nearest", 0), ("loe", "linear", 0),
                                                      ("loe", "nearest", 100)])
def test_fit_step_in_bf16(arch, blend, batch_pixels):
    """LoE's hand-written kernels (full grid, linear blending, random pixels) compute in bf16 like the rest; the
    prediction is bf16-close to fp32's (the loss, dominated by the untrained error, hides the difference)."""
    reference = fit_objective(arch, blend, FP32, batch_pixels)
    objective = fit_objective(arch, blend, BF16, batch_pixels)
    args = (16, 16) if objective.full else objective.coords[:100]
    with torch.no_grad(), BF16.autocast():
        prediction = objective.forward(args)
    bound = SINE_BOUND if arch == "siren" else BF16_BOUND
    assert FP32_NOISE < relative(prediction, reference.forward(args).detach()) < bound
    fp32 = reference.step(None, {})
    with MatmulDtypes() as seen:
        bf16 = objective.step(None, {})
    assert seen.dtypes and set(seen.dtypes) == {torch.bfloat16}
    assert bf16["loss"].dtype == torch.float32 and relative(bf16["loss"], fp32["loss"]) < BF16_BOUND
    assert_master_weights_fp32([objective.field], [objective.optimizer])


def meta_objective(precision: Precision, first_order: bool = False, tmp=None) -> MetaObjective:
    torch.manual_seed(0)
    model = SpatialFuncta((4, 4, 4), 16, 3, 16, 3)
    return MetaObjective(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), inner_steps=2,
                         first_order=first_order, checkpointed=False, out=tmp, run_dir=tmp, options={},
                         pictures=torch.zeros(1, 3, 16, 16), precision=precision)


def test_meta_step_in_bf16_second_order():
    """Autocast's casts are differentiable, so the second-order inner loop runs in bf16 and still reaches the
    Meta-SGD rates; the per-image errors are reduced in fp32."""
    images = (torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1,)
    fp32 = meta_objective(FP32).step(images, {})
    objective = meta_objective(BF16)
    hooked = []
    objective.model.to_modulation.register_forward_hook(lambda m, i, out: hooked.append(out.dtype))
    with MatmulDtypes() as seen:
        bf16 = objective.step(images, {})
    assert set(seen.dtypes) == {torch.bfloat16} and hooked == [torch.bfloat16] * 3  # 2 inner steps + outer
    assert_bf16_close(bf16, fp32, ["loss", "psnr"])
    assert objective.model.meta_lr.grad.abs().sum() > 0 and torch.isfinite(objective.model.meta_lr.grad).all()
    assert_master_weights_fp32([objective.model], [objective.optimizer])


def gan_objective(precision: Precision, tmp, r1_every: int = 1) -> GanObjective:
    torch.manual_seed(0)
    gcfg = generator_config(resolution=16, blocks=[[8, 1, 16], [16, 1, 16]], z_dim=16, hyper_hidden=32,
                            out_channels=1)
    G, D = InrGanGenerator(gcfg).train(), Discriminator(discriminator_config(16, 1, 64, 16)).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    adam = lambda params, lr: torch.optim.Adam(params, lr=lr, betas=(0.0, 0.98))  # noqa: E731
    return GanObjective(G=G, D=D, G_ema=G_ema, opt_g=adam(G.parameters(), 1e-3), opt_d=adam(D.parameters(), 2e-3),
                        seed=0, batch=8, r1_gamma=10.0, r1_every=r1_every, ema_kimg=0.01, ema_rampup=None, out=tmp,
                        run_dir=tmp, artifact_config={}, options={}, precision=precision)


def test_gan_step_in_bf16_with_r1(tmp_path):
    """G and D forward in bf16 (their hooks see it), R1's double backward runs through the casts, the three
    losses are float32 and within bf16's distance of fp32's."""
    reals = (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1,)
    pos = dict(step=0, images=0)
    fp32 = gan_objective(FP32, tmp_path).step(reals, pos)
    objective = gan_objective(BF16, tmp_path)
    hooked = []
    objective.D.from_rgb.register_forward_hook(lambda m, i, out: hooked.append(out.dtype))
    objective.G.mapping_layers[0].register_forward_hook(lambda m, i, out: hooked.append(out.dtype))
    bf16 = objective.step(reals, pos)
    assert hooked and set(hooked) == {torch.bfloat16}
    assert bf16["r1"] > 0 and math.isfinite(bf16["r1"])
    assert_bf16_close(bf16, fp32, ["loss_g", "loss_d", "r1"])
    assert_master_weights_fp32([objective.G, objective.D], [objective.opt_g, objective.opt_d])


# ---------------------------------------------------------------- renderers under autocast


def test_render_codes_in_bf16_are_float32_and_close():
    """Each family's render interface under bf16 autocast: float32 values, computed in bf16, within bf16's
    distance of the fp32 render (INR-GAN keeps its head and Fourier features in fp32 on purpose)."""
    torch.manual_seed(0)
    field = build_field(field_config("siren", 2, 3, 16, 32, 3, 2, "nearest", "coarse-to-fine", 4, 30.0, 0)).eval()
    funct = SpatialFuncta((4, 4, 4), 16, 3, 16, 3).eval()
    G = InrGanGenerator(generator_config(resolution=16, blocks=[[8, 1, 16], [16, 1, 16]], z_dim=16,
                                         hyper_hidden=32)).eval()
    theta = seed_params(G, [0, 1], 1.0)[0]
    z = torch.randn(2, 4, 4, 4)
    renders = {"field": (lambda: field.forward_grid((32, 32)), SINE_BOUND),
               "functa": (lambda: functa_render_codes(funct, z, (32, 32)), SINE_BOUND),
               "inrgan": (lambda: render_theta(G, theta, (32, 32)), BF16_BOUND)}
    for name, (draw, bound) in renders.items():
        with torch.no_grad():
            fp32 = draw()
            with BF16.autocast(), MatmulDtypes() as seen:
                bf16 = draw()
        assert torch.bfloat16 in seen.dtypes, name
        if name != "field":  # the render interface hands float32 to the pictures
            assert bf16.dtype == torch.float32, name
        assert FP32_NOISE < relative(bf16, fp32) < bound, name


def test_render_stage_bf16_png_is_close_to_fp32(tmp_path):
    """`inrkit render --precision bf16` end to end: the PNG is within a few grey levels of the fp32 one."""
    import numpy as np
    from PIL import Image

    from inrkit.stages.fit import fit
    from inrkit.stages.render import render

    out = tmp_path / "f.safetensors"
    fit("builtin:camera", out, arch="siren", width=16, depth=3, size=(16, 16), steps=5, device="cpu",
        progress=False)
    pngs = [render(out, tmp_path / f"{p}.png", scale=2, device="cpu", precision=p) for p in ("fp32", "bf16")]
    a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in pngs)
    assert a.shape == b.shape == (32, 32) and 0 < np.abs(a - b).max() <= 6


# ---------------------------------------------------------------- no per-step host work in a fit's full-grid step


def test_full_grid_and_loe_plan_are_built_once():
    """The grid a fit evaluates every step, and LoE's plan for it, are made once (building them again copies the
    grid from the host and reads the grid transforms back: on CUDA both wait for the GPU); loading other grid
    transforms forgets the plan."""
    from inrkit.fields.grid import grid_on, make_grid

    assert grid_on((8, 4), None, "cpu") is grid_on((8, 4), None, "cpu")
    assert torch.equal(grid_on((8, 4), [(0, 2), (0, 1)], "cpu"), make_grid((8, 4), [(0.0, 2.0), (0.0, 1.0)]))
    config = lambda arrangement: field_config("loe", 2, 1, 16, 8, 3, 2, "nearest", arrangement, 4, 30.0, 0)  # noqa: E731
    field, other = build_field(config("coarse-to-fine")), build_field(config("random-affine"))
    field.forward_grid((16, 16))
    assert list(field.plans) == [((16, 16), None)] and field.plans[((16, 16), None)] is not None
    field.load_state_dict(other.state_dict())
    assert torch.equal(field.forward_grid((16, 16)), other.forward_grid((16, 16)))


# ---------------------------------------------------------------- --compile


def test_compile_without_a_cpu_compiler_is_one_sentence(monkeypatch):
    monkeypatch.setattr(precision_mod.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(InrkitError, match=r"^--compile cannot be used here: torch\.compile on a CPU builds C\+\+ "
                                          r"kernels and no C\+\+ compiler \(g\+\+ or clang\+\+\) is on PATH; run "
                                          r"without --compile\.$"):
        dataclasses.replace(fit_objective("siren", "nearest", FP32), compile=True)


def test_compile_needs_first_order_for_meta(tmp_path):
    with pytest.raises(InrkitError, match=r"^--compile needs --first-order: "):
        dataclasses.replace(meta_objective(FP32, tmp=tmp_path), compile=True)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["siren", "loe"])
def test_compiled_fit_step_matches_eager(arch):
    """torch.compile on this CPU (it builds C++ kernels: tens of seconds): the same loss as eager, closely (LoE's
    full grid through plain ops where its hand-written kernels would stop the compiler)."""
    eager = fit_objective(arch, "nearest", FP32)
    fast = dataclasses.replace(fit_objective(arch, "nearest", FP32), compile=True)
    for _ in range(3):
        a, b = eager.step(None, {}), fast.step(None, {})
        assert relative(b["loss"], a["loss"]) < 1e-4


# ---------------------------------------------------------------- CUDA (skipped without a GPU)


@CUDA
def test_cuda_bf16_fit_step_close_to_cpu_fp32():
    cpu = fit_objective("loe", "nearest", FP32).step(None, {})
    objective = fit_objective("loe", "nearest", FP32)
    objective.field.cuda()
    objective = dataclasses.replace(objective, target=objective.target.cuda(),
                                    precision=resolve_precision("auto", "cuda"))
    assert objective.precision.name == "bf16"
    cuda = objective.step(None, {})
    assert relative(cuda["loss"].cpu(), cpu["loss"]) < BF16_BOUND


@CUDA
def test_cuda_gan_steps_never_sync_and_d_is_channels_last(tmp_path):
    """No host-device sync in a training step (torch raises on one), R1 included; D's convolutions channels-last."""
    objective = gan_objective(resolve_precision("bf16", "cuda"), tmp_path)
    for m in (objective.G, objective.D, objective.G_ema):
        m.cuda()
    objective.precision.convolutions(objective.D)
    assert objective.D.from_rgb.weight.is_contiguous(memory_format=torch.channels_last)
    reals = (torch.rand(8, 1, 16, 16).pin_memory(),)
    objective.step(reals, dict(step=0, images=0))  # warm-up: allocations, cuBLAS handles
    torch.cuda.set_sync_debug_mode("error")
    try:
        objective.step(reals, dict(step=1, images=8))
    finally:
        torch.cuda.set_sync_debug_mode("default")


@CUDA
def test_cuda_rng_state_is_saved_and_restored(tmp_path):
    model = torch.nn.Linear(2, 2).cuda()
    torch.cuda.manual_seed(5)
    torch.rand(3, device="cuda")
    save_state(tmp_path / "s.safetensors", dict(m=model), {}, {}, {}, dict(step=1, images=1))
    expected = torch.rand(3, device="cuda")
    torch.cuda.manual_seed(99)
    load_state(tmp_path / "s.safetensors", dict(m=model), {}, {}, {})
    assert torch.equal(torch.rand(3, device="cuda"), expected)


@CUDA
def test_cuda_loader_pins_batches():
    from inrkit.data import make_loader, open_dataset

    images, _ = next(make_loader(open_dataset("builtin:digits", 8, 1), 4, workers=0, device="cuda"))
    assert images.is_pinned()
