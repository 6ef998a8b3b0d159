"""The GPU benchmark (issue 17): one script, under 8 minutes on one H100/H200, run by bench/gpu.sh.

    bash bench/gpu.sh                        # CUDA: prints the tables, writes bench/results/gpu.json
    bash bench/gpu.sh --device cpu --tiny    # the same code on tiny models, on a CPU (under 2 minutes)

Sections (each case is timed after a warm-up for --seconds, synchronising after every call):
  agreement   each model family's forward on a fixed batch, on the device in fp32 (TF32 off) and bf16, against the
              CPU fp32 forward: max abs error (and relative to the largest reference value)
  generator   INR-GAN 256^2 generator images/s in fp32, tf32, bf16 and compiled bf16 (inference, batch 32), achieved
              TFLOP/s (2 x the closed-form MACs) and its fraction of the chip's dense bf16 peak (PEAKS_BF16)
  fit         LoE field fit steps/s at 512^2 (the full grid, supp. A's 10 x 64 network) against the dense MLP of the
              same shape (the PE MLP of LoE Table 1), side by side; the target is LoE within 1.15x of the MLP's time
  meta        spatial functa meta-learning steps/s (CIFAR-10 recipe: 8x8x16, 256 x 6, 3 second-order inner steps)
  training    training images/s of each trainer's step at the paper's batch size (train-gan 32 at 256^2, meta 128,
              train-classifier and train-diffusion 256 latents; fit is one image a step); synthetic batches already
              on the device, so data loading is not included (bench/data_loader.py measures it)
A case that fails (out of memory, an unsupported op) records its error and the run goes on. It needs only torch
and what `import inrkit.train` imports (numpy, pillow, rich, safetensors), from a plain checkout, offline.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a plain checkout: inrkit imports without being installed
NEEDS = ("torch", "numpy", "PIL", "rich", "safetensors")
# Dense bf16 tensor-core peaks in TFLOP/s (NVIDIA's datasheets, without sparsity), matched in order by name.
PEAKS_BF16 = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("A100", 312.0),
              ("L40S", 362.0), ("L4", 121.0))

FULL = dict(seconds=5.0, agreement_batch=8, gan_resolution=256, gan_blocks=None, z_dim=512, hyper_hidden=1024,
            d_channel_base=16384, gen_batch=32, gan_batch=32, fit_side=512, fit_width=64, fit_depth=10,
            meta=dict(latent=(8, 8, 16), resolution=32, width=256, depth=6, batch=128, inner_steps=3),
            classifier=dict(latent=[8, 8, 16], classes=10, width=128, depth=12, heads=16, batch=256),
            diffusion=dict(latent=[8, 8, 16], channels=320, res_blocks=3, channel_mult=[2, 2, 2], attention=[8],
                           batch=256))  # recipes/diffusion-cifar10.json
TINY = dict(seconds=0.3, agreement_batch=2, gan_resolution=32, gan_blocks=[[16, 1, 32], [32, 1, 32]], z_dim=32,
            hyper_hidden=64, d_channel_base=256, gen_batch=4, gan_batch=4, fit_side=64, fit_width=16, fit_depth=4,
            meta=dict(latent=(4, 4, 4), resolution=16, width=32, depth=3, batch=8, inner_steps=2),
            classifier=dict(latent=[4, 4, 4], classes=10, width=32, depth=2, heads=4, batch=16),
            diffusion=dict(latent=[4, 4, 4], channels=16, res_blocks=1, channel_mult=[1, 2], attention=[2], batch=8))


def preflight() -> None:
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"bench/gpu.py needs the Python packages {', '.join(missing)} (what inrkit imports); install them, "
                 "e.g. pip install -e . (with its dependencies), and run it again.")


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable, device, seconds: float, warmup: int = 2) -> float:
    """Seconds per call: after `warmup` calls, as many as fit in `seconds` (at least 3), synchronised each."""
    for _ in range(warmup):
        fn()
    sync(device)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        fn()
        sync(device)
        calls += 1
    return (time.perf_counter() - start) / calls


def stepper(objective, batch, images: int) -> Callable[[], dict]:
    """One training step per call, at the next position (the loop's `pos`: step and images before the step)."""
    pos = dict(step=0, images=0)

    def step() -> dict:
        losses = objective.step(batch, dict(pos))
        pos["step"], pos["images"] = pos["step"] + 1, pos["images"] + images
        return losses

    return step


def guarded(rows: list, case: dict, measure: Callable[[], dict]) -> None:
    """Append `case` with what `measure` returns, or with its error (the run goes on)."""
    import torch

    try:
        case.update(measure())
    except Exception as err:  # noqa: BLE001 - one broken case must not cost the rest of a 15-minute GPU window
        traceback.print_exc(file=sys.stderr)
        case["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    rows.append(case)


# ---------------------------------------------------------------- the models, small or at paper size


def generator(s: dict, resolution: int | None = None):
    from inrkit.models.inrgan import InrGanGenerator, generator_config

    return InrGanGenerator(generator_config(resolution=resolution or s["gan_resolution"], blocks=s["gan_blocks"],
                                            z_dim=s["z_dim"], hyper_hidden=s["hyper_hidden"]))


def discriminator(s: dict):
    from inrkit.models.discriminator import Discriminator, discriminator_config

    return Discriminator(discriminator_config(s["gan_resolution"], 3, s["d_channel_base"]))


def field(arch: str, s: dict, blend: str = "nearest"):
    from inrkit.fields import build_field
    from inrkit.stages.fit import field_config

    return build_field(field_config(arch, 2, 3, s["fit_side"], s["fit_width"], s["fit_depth"], 2, blend,
                                    "coarse-to-fine", 8, 30.0, 0))


def functa(s: dict):
    from inrkit.models.functa import SpatialFuncta

    m = s["meta"]
    return SpatialFuncta(m["latent"], m["resolution"], 3, m["width"], m["depth"])


def classifier(s: dict):
    from inrkit.models.classifier import FunctaClassifier, classifier_config

    c = s["classifier"]
    return FunctaClassifier(classifier_config(latent=c["latent"], classes=c["classes"], width=c["width"],
                                              depth=c["depth"], heads=c["heads"]))


def unet(s: dict):
    """The diffusion UNet with its zero-initialised layers (ADM's output convolutions) drawn small instead, so that
    its forward is not 0 and the comparison sees the whole network."""
    import torch

    from inrkit.models.unet import build_denoiser, unet_config

    d = s["diffusion"]
    net = build_denoiser(unet_config(latent=d["latent"], classes=10, channels=d["channels"],
                                     res_blocks=d["res_blocks"], channel_mult=d["channel_mult"],
                                     attention=d["attention"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.02, generator=g)
    return net


def family_forwards(s: dict) -> dict:
    """name -> (build, inputs, forward(model, *inputs)): one fixed batch per model family, built when measured."""
    import torch

    g = torch.Generator().manual_seed(0)
    b, m, side = s["agreement_batch"], s["meta"], 64
    r = s["gan_resolution"]
    grid = lambda f, _: f.forward_grid((side, side))  # noqa: E731
    return {
        "field siren": (lambda: field("siren", s), (None,), grid),
        "field pe (dense MLP)": (lambda: field("pe", s), (None,), grid),
        "field loe nearest": (lambda: field("loe", s), (None,), grid),
        "field loe linear": (lambda: field("loe", s, "linear"), (None,), grid),
        "spatial functa": (lambda: functa(s), (torch.randn(b, *m["latent"], generator=g),
                                               torch.rand(m["resolution"] ** 2, 2, generator=g)),
                           lambda f, z, c: f(z, c)),
        "INR-GAN generator": (lambda: generator(s), (torch.randn(b, s["z_dim"], generator=g),), lambda f, z: f(z)),
        "StyleGAN2 discriminator": (lambda: discriminator(s), (torch.rand(b, 3, r, r, generator=g) * 2 - 1,),
                                    lambda f, x: f(x)),
        "functa classifier": (lambda: classifier(s), (torch.randn(b, *s["classifier"]["latent"], generator=g),),
                              lambda f, z: f(z)),
        "diffusion UNet": (lambda: unet(s), (torch.randn(b, *s["diffusion"]["latent"], generator=g),
                                             torch.randint(1000, (b,), generator=g),
                                             torch.randint(10, (b,), generator=g)), lambda f, x, t, y: f(x, t, y)),
    }


# ---------------------------------------------------------------- sections


def agreement(device, s: dict) -> list[dict]:
    """Max abs error of the device's fp32 and bf16 forwards against the CPU's fp32 forward."""
    import torch

    from inrkit.core.precision import resolve_precision

    rows = []
    for name, (build, inputs, forward) in family_forwards(s).items():
        def measure(build=build, inputs=inputs, forward=forward):
            model = build().eval()
            with torch.no_grad():
                reference = forward(model, *inputs).float()
                on_device = copy.deepcopy(model).to(device)
                moved = [x.to(device) if x is not None else None for x in inputs]
                out = {}
                for p in ("fp32", "bf16"):
                    with resolve_precision(p, device).autocast():
                        err = (forward(on_device, *moved).float().cpu() - reference).abs().max().item()
                    out[f"max_abs_{p}"], out[f"rel_{p}"] = err, err / max(reference.abs().max().item(), 1e-12)
                return out

        guarded(rows, dict(case=name), measure)
    return rows


def generator_speed(device, s: dict, peak: float | None) -> list[dict]:
    """Images/s of the generator (inference) in each precision, compiled last; TFLOP/s and the peak fraction."""
    import torch

    from inrkit.core.precision import compile_module, resolve_precision

    G = generator(s).to(device).eval()
    z = torch.randn(s["gen_batch"], s["z_dim"], device=device)
    macs = G.macs_per_image()
    auto = resolve_precision("auto", device).name
    rows = []
    for label, name, compile in (("fp32", "fp32", False), ("tf32", "tf32", False), ("bf16", "bf16", False),
                                 (f"compiled {auto}", auto, True)):
        def measure(name=name, compile=compile):
            precision = resolve_precision(name, device)
            net = compile_module(copy.deepcopy(G), device) if compile else G
            first = time.perf_counter()
            with torch.no_grad(), precision.autocast():
                net(z)  # the first call compiles
                sync(device)
                first = time.perf_counter() - first
                per_call = timed(lambda: net(z), device, s["seconds"])
            images = s["gen_batch"] / per_call
            tflops = 2 * macs * images / 1e12
            return dict(images_per_s=images, tflops=tflops, peak_fraction=tflops / peak if peak else None,
                        first_call_s=first)

        guarded(rows, dict(case=label, resolution=s["gan_resolution"], batch=s["gen_batch"],
                           gmacs_per_image=macs / 1e9), measure)
    return rows


def fit_objective(arch: str, s: dict, precision, device):
    import torch

    from inrkit.train.fitting import FitObjective

    f = field(arch, s).to(device)
    opt = torch.optim.Adam(f.parameters(), lr=5e-3, betas=(0.9, 0.995))
    target = torch.rand(s["fit_side"], s["fit_side"], 3, device=device)
    return FitObjective(field=f, target=target, optimizer=opt, scheduler=torch.optim.lr_scheduler.LambdaLR(
        opt, lambda _: 1.0), batch_pixels=0, seed=0, snapshot_hook=lambda pos: None, precision=precision)


def fit_speed(device, s: dict) -> list[dict]:
    """LoE (nearest, coarse-to-fine) against the dense PE MLP of the same shape, full-grid Adam steps."""
    from inrkit.core.precision import resolve_precision

    rows = []
    for name in ("fp32", "bf16"):
        def measure(name=name):
            precision = resolve_precision(name, device)
            loe, mlp = (fit_objective(a, s, precision, device) for a in ("loe", "pe"))
            t_loe = timed(stepper(loe, None, 1), device, s["seconds"])
            t_mlp = timed(stepper(mlp, None, 1), device, s["seconds"])
            return dict(loe_steps_per_s=1 / t_loe, mlp_steps_per_s=1 / t_mlp, loe_over_mlp_time=t_loe / t_mlp)

        guarded(rows, dict(case=name, side=s["fit_side"], width=s["fit_width"], depth=s["fit_depth"]), measure)
    return rows


def meta_speed(device, s: dict) -> list[dict]:
    """Outer steps/s of spatial functa meta-learning (second order), and images/s at its batch."""
    import torch

    from inrkit.core.precision import resolve_precision
    from inrkit.train.metalearn import MetaObjective

    m, rows = s["meta"], []
    images = (torch.rand(m["batch"], 3, m["resolution"], m["resolution"], device=device) * 2 - 1,)
    for name in ("fp32", "bf16"):
        def measure(name=name):
            model = functa(s).to(device)
            objective = MetaObjective(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=3e-5),
                                      inner_steps=m["inner_steps"], first_order=False, checkpointed=False,
                                      out=None, run_dir=None, options={}, pictures=images[0][:1],
                                      precision=resolve_precision(name, device))
            per_step = timed(stepper(objective, images, m["batch"]), device, s["seconds"])
            return dict(steps_per_s=1 / per_step, images_per_s=m["batch"] / per_step)

        guarded(rows, dict(case=name, batch=m["batch"]), measure)
    return rows


def gan_objective(s: dict, precision, device):
    import torch

    from inrkit.train.gan import GanObjective

    G, D = generator(s).to(device).train(), precision.convolutions(discriminator(s).to(device).train())
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    adam = lambda params, lr: torch.optim.Adam(params, lr=lr, betas=(0.0, 0.98), eps=1e-8)  # noqa: E731
    return GanObjective(G=G, D=D, G_ema=G_ema, opt_g=adam(G.parameters(), 1e-5), opt_d=adam(D.parameters(), 3e-3),
                        seed=0, batch=s["gan_batch"], r1_gamma=10.0, r1_every=1, ema_kimg=10.0, ema_rampup=None,
                        out=None, run_dir=None, artifact_config={}, options={}, precision=precision)


def classifier_objective(s: dict, device):
    import torch

    from inrkit.train.classify import ClassifierObjective

    net = classifier(s).to(device).train()
    opt = torch.optim.AdamW(net.decay_groups(0.1), lr=1e-3)
    return ClassifierObjective(net=net, ema=copy.deepcopy(net).eval(), optimizer=opt,
                               scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0), label_smoothing=0.1,
                               ema_decay=0.9999, snapshot_hook=lambda pos: None)


def diffusion_objective(s: dict, device):
    import torch

    from inrkit.models import diffusion as D
    from inrkit.models.unet import build_denoiser, unet_config
    from inrkit.train.diffusion import DiffusionObjective

    d = s["diffusion"]
    net = build_denoiser(unet_config(latent=d["latent"], classes=10, channels=d["channels"],
                                     res_blocks=d["res_blocks"], channel_mult=d["channel_mult"],
                                     attention=d["attention"], dropout=0.1))
    denoiser = D.Denoiser(net, D.alpha_bar_schedule("cosine"), classes=10, label_dropout=0.2,
                          probs=D.timestep_probabilities(D.T_DEFAULT, 3.0)).to(device).train()
    return DiffusionObjective(denoiser=denoiser, ema=copy.deepcopy(denoiser).eval().requires_grad_(False),
                              optimizer=torch.optim.Adam(net.parameters(), lr=1e-4), ema_decay=0.9999,
                              conditional=True, noise=torch.Generator(device=device).manual_seed(0),
                              snapshot_hook=lambda pos: None)


def autocast_steps(make: Callable, batch, images: int, device, s: dict, name: str) -> Callable[[], dict]:
    """Images/s of an objective that has no precision of its own yet: its bf16 row autocasts the whole step."""
    from inrkit.core.precision import resolve_precision

    def measure() -> dict:
        objective = make(s, device)
        with resolve_precision(name, device).autocast():
            per_step = timed(stepper(objective, batch, images), device, s["seconds"])
        return dict(images_per_s=images / per_step)

    return measure


def training_speed(device, s: dict, fit_rows: list, meta_rows: list) -> list[dict]:
    """Images/s of each trainer's step at the paper's batch: train-gan and train-classifier timed here, meta and
    fit from their sections."""
    import torch

    from inrkit.core.precision import resolve_precision

    rows, r, c, d = [], s["gan_resolution"], s["classifier"], s["diffusion"]
    reals = (torch.rand(s["gan_batch"], 3, r, r, device=device) * 2 - 1,)
    codes = {k: (torch.randn(v["batch"], *v["latent"], device=device), torch.randint(10, (v["batch"],), device=device))
             for k, v in (("classifier", c), ("diffusion", d))}
    for name in ("fp32", "bf16"):
        def gan(name=name):
            objective = gan_objective(s, resolve_precision(name, device), device)
            per_step = timed(stepper(objective, reals, s["gan_batch"]), device, s["seconds"])
            return dict(images_per_s=s["gan_batch"] / per_step)

        guarded(rows, dict(case=f"train-gan {r}x{r}", precision=name, batch=s["gan_batch"]), gan)
        guarded(rows, dict(case="train-classifier", precision=name, batch=c["batch"]),
                autocast_steps(classifier_objective, codes["classifier"], c["batch"], device, s, name))
        guarded(rows, dict(case="train-diffusion", precision=name, batch=d["batch"]),
                autocast_steps(diffusion_objective, codes["diffusion"], d["batch"], device, s, name))
    for row in meta_rows:
        rows.append(dict(case="meta", precision=row["case"], batch=row["batch"], **(
            dict(images_per_s=row["images_per_s"]) if "images_per_s" in row else dict(error=row.get("error")))))
    for row in fit_rows:
        rows.append(dict(case=f"fit loe {row['side']}x{row['side']}", precision=row["case"], batch=1, **(
            dict(images_per_s=row["loe_steps_per_s"]) if "loe_steps_per_s" in row else dict(error=row.get("error")))))
    return rows


# ---------------------------------------------------------------- the run


def peak_of(name: str) -> float | None:
    """The dense bf16 peak of a chip by its torch.cuda.get_device_name (None: not in PEAKS_BF16)."""
    return next((peak for key, peak in PEAKS_BF16 if key in name), None)


def chip(device) -> tuple[str, float | None]:
    """The device's name and its dense bf16 peak (None: unknown)."""
    import torch

    if torch.device(device).type != "cuda":
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)", None
    name = torch.cuda.get_device_name(torch.device(device))
    return name, peak_of(name)


def table(title: str, rows: list[dict]) -> str:
    """A markdown table of the rows (columns: every key any row has, in order of first appearance)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cell = lambda v: "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(k)) for k in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run(device: str, tiny: bool) -> dict:
    import torch

    s = TINY if tiny else FULL
    name, peak = chip(device)
    started = time.perf_counter()
    sections = {"agreement": agreement(device, s)}
    sections["generator"] = generator_speed(device, s, peak)
    sections["fit"] = fit_speed(device, s)
    sections["meta"] = meta_speed(device, s)
    sections["training"] = training_speed(device, s, sections["fit"], sections["meta"])
    return dict(device=name, bf16_peak_tflops=peak if peak else "unknown", torch=torch.__version__,
                cuda=torch.version.cuda, tiny=tiny, settings=s, seconds=time.perf_counter() - started,
                sections=sections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (the default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny models and short timings (a CPU rehearsal)")
    ap.add_argument("--out", type=Path, help="JSON results (default bench/results/gpu.json, --tiny gpu-tiny.json)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    preflight()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: --device cuda was asked for but torch sees no CUDA GPU; use --device cpu --tiny.")
    result = run(args.device, args.tiny)
    peak = result["bf16_peak_tflops"]
    print(f"## GPU benchmark: {result['device']} (dense bf16 peak: {peak}{' TFLOP/s' if peak != 'unknown' else ''}), "
          f"torch {result['torch']}, {result['seconds']:.0f} s{' (tiny)' if args.tiny else ''}\n")
    for title, rows in result["sections"].items():
        print(table(title, rows))
    out = args.out or ROOT / "bench" / "results" / ("gpu-tiny.json" if args.tiny else "gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
