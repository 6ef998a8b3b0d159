"""`inrkit meta`: meta-learn (spatial) functa on a dataset, then encode it to functasets.

Writes OUT (kind `functa-model`: config + SIREN, latent-to-modulation conv and Meta-SGD rates) at every
snapshot, and a run folder OUT without its suffix holding the training state (state.safetensors: model,
Adam moments, step, images consumed, RNG), stats.jsonl, psnr.png, reconstructions-STEP.png (targets above,
3-step reconstructions below) and at the end functaset-train.safetensors and functaset-heldout.safetensors.
Rerunning the same command resumes from the state; changed training options are refused.

Distributed: under torchrun every rank takes batch / world_size images of the one global stream and the
outer gradients are averaged by an explicit all_reduce after backward (DDP's hooks and the second-order
inner loop's double backward do not mix well; one all_reduce of a flat buffer is simple and exact).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import plot_curve, save_png
from inrkit.core.progress import StatsWriter, progress_bar
from inrkit.core.runtime import pick_device, print0, seed_all
from inrkit.models.functa import SpatialFuncta, check_latent_fits, parse_latent
from inrkit.models.metalearn import decode, encode, outer_loss
from inrkit.stages.encode import write_functaset

ARCHS = ("spatial-functa", "functa")
# Options that change what is learned: a resumed run must match them. Others (steps, snapshot, seconds,
# device, workers, checkpointed, progress, functaset options) may change between runs.
TRAINING_KEYS = ("data", "count", "arch", "latent", "interp", "kernel", "resolution", "channels", "width", "depth",
                 "w0", "inner_steps", "first_order", "lr", "batch", "seed")
PICTURE_ITEMS = 8  # training images shown in each snapshot picture


def meta(
    data: str,                         # training images (see inrkit.data.DATA_HELP)
    out: Path,                         # the functa-model artifact; the run folder is OUT without its suffix
    arch: str = "spatial-functa",      # spatial-functa, or functa (a flat latent: --latent C, s = 1)
    latent: str = "8x8x16",            # latent shape SxSxC (App. C.1: 8x8x16 or 4x4x64 on CIFAR-10)
    interp: str = "nearest",           # nearest (per-patch coordinates) or bilinear (binary coordinates), App. C
    kernel: int = 1,                   # latent-to-modulation convolution: 1x1, or 3x3 (Tab. 3*)
    resolution: int = 32,              # image side; the latent side must divide it
    channels: int = 3,                 # 3 (RGB) or 1 (grey)
    width: int = 256,                  # SIREN width (Tab. 4: 256)
    depth: int = 6,                    # SIREN linear layers in all (Tab. 4: 6 for 8x8 latents)
    w0: float = 10.0,                  # SIREN omega_0 (App. C.1: 10)
    inner_steps: int = 3,              # inner SGD steps from zero latents (Sec. 4: 3)
    first_order: bool = False,         # treat inner gradients as constants (no second-order terms)
    checkpointed: bool = False,        # recompute inner-loop activations in the outer backward (saves memory)
    lr: float = 3e-5,                  # outer Adam learning rate (Tab. 4: 3e-5 for 8x8x16 1-NN)
    batch: int = 128,                  # images per outer step, over all ranks (App. C.1: 128)
    steps: int = 200_000,              # outer steps in all (App. C.1: 200k for 8x8 latents)
    seconds: float | None = None,      # stop this run after this much training time (then snapshot and encode)
    snapshot: int = 1000,              # outer steps between snapshots (model, state, picture)
    count: int | None = None,          # use the first `count` training images (default: all)
    heldout: str | None = None,        # held-out images for the final functaset (default: a builtin set's heldout)
    heldout_count: int | None = None,  # use the first `heldout_count` held-out images
    functasets: bool = True,           # encode the training and held-out sets at the end
    encode_steps: int = 3,             # inner steps when encoding the functasets
    encode_batch: int = 64,            # images per encoding batch
    workers: int = 2,                  # data-decoding processes
    seed: int = 0,                     # model initialisation and data order
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """Meta-learn the shared parameters, write the model and functasets; return summary metrics."""
    from inrkit.data import make_loader, open_dataset

    out = Path(out)
    options = {k: v for k, v in locals().items() if k in inspect.signature(meta).parameters}
    options["out"] = str(out)
    shape = _check_options(out, arch, latent, resolution, batch, steps, inner_steps, snapshot)
    dev = pick_device(device)
    runtime.init_distributed(dev)
    seed_all(seed)
    model = SpatialFuncta(shape, resolution, channels, width, depth, w0, interp, kernel).to(dev)
    dataset = open_dataset(data, resolution, channels, count=count)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    run_dir = out.with_suffix("")
    training = {k: options[k] for k in TRAINING_KEYS}
    step, consumed = _resume(run_dir / "state.safetensors", model, optimizer, training)
    runtime.broadcast_parameters(model)
    stats = StatsWriter(run_dir / "stats.jsonl", append=step > 0)
    loader = make_loader(dataset, batch // runtime.world_size(), seed=seed, start=consumed // runtime.world_size(),
                         workers=workers)
    pictures = torch.stack([dataset[i][0] for i in range(min(PICTURE_ITEMS, len(dataset)))]).to(dev)
    snap = dict(model=model, optimizer=optimizer, out=out, run_dir=run_dir, options=options, training=training,
                pictures=pictures)
    start_step, start = step, time.perf_counter()
    with progress_bar(f"meta from step {step}" if step else "meta", steps - step, enabled=progress) as update:
        while step < steps and (seconds is None or time.perf_counter() - start < seconds):
            images, _ = next(loader)
            info = _outer_step(model, optimizer, images.to(dev), inner_steps, first_order, checkpointed)
            step, consumed = step + 1, consumed + batch
            update(psnr=info["psnr"], psnr0=info["psnr_start"])
            if step % 10 == 0 or step == steps:
                stats.write(step=step, seconds=time.perf_counter() - start, **info)
            if step % snapshot == 0:
                _snapshot(step=step, consumed=consumed, **snap)
    if step > start_step or not out.is_file():
        _snapshot(step=step, consumed=consumed, **snap)
    print0(f"meta-learned {step} steps ({step - start_step} in this run, {time.perf_counter() - start:.0f} s) "
           f"-> {out}")
    metrics = dict(step=step, run_steps=step - start_step, run_seconds=time.perf_counter() - start,
                   parameters_sha256=parameters_sha256(model))
    if functasets:
        metrics.update(_final_functasets(model, out, run_dir, dataset, data, heldout, heldout_count, resolution,
                                         channels, encode_steps, encode_batch, workers, progress))
    return metrics


def _check_options(out: Path, arch: str, latent: str, resolution: int, batch: int, steps: int, inner_steps: int,
                   snapshot: int) -> tuple[int, int, int]:
    """Fail fast, in one sentence, on options that cannot work."""
    if out.suffix != ".safetensors":
        raise InrkitError(f"--out {out} should end in .safetensors.")
    if arch not in ARCHS:
        raise InrkitError(f"unknown --arch {arch!r}; choose spatial-functa or functa.")
    shape = parse_latent(latent)
    if arch == "functa" and shape[0] != 1:
        raise InrkitError(f"--arch functa has a flat latent; write --latent {shape[2]} or use spatial-functa.")
    check_latent_fits(shape, resolution)
    if min(batch, steps, snapshot) < 1 or inner_steps < 0:
        raise InrkitError("--batch, --steps and --snapshot must be at least 1 and --inner-steps at least 0.")
    if batch % runtime.world_size():
        raise InrkitError(f"--batch {batch} does not split evenly over {runtime.world_size()} processes.")
    return shape


def _outer_step(model: SpatialFuncta, optimizer, images: torch.Tensor, inner_steps: int, first_order: bool,
                checkpointed: bool) -> dict:
    """One Adam step on the outer loss, gradients averaged over ranks, Meta-SGD rates clipped after it."""
    loss, info = outer_loss(model, images, inner_steps, first_order, checkpointed)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    runtime.average_gradients(model)
    optimizer.step()
    model.clip_learning_rates()
    return dict(loss=loss.item(), psnr=info["psnr"].mean().item(), psnr_start=info["psnr_start"].mean().item(),
                meta_lr=model.meta_lr.mean().item())


def parameter_fingerprint(model: torch.nn.Module) -> torch.Tensor:
    """Two float64 sums per parameter: equal on every rank exactly when the ranks are in sync (in practice)."""
    sums = [torch.stack([p.double().sum(), (p.double() ** 2).sum()]) for p in model.parameters()]
    return torch.cat(sums).detach()


def parameters_sha256(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal across ranks (and runs) exactly when the models are."""
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_in_sync(model: torch.nn.Module) -> None:
    if runtime.world_size() == 1:
        return
    mine = parameter_fingerprint(model)
    every = [torch.empty_like(mine) for _ in range(runtime.world_size())]
    torch.distributed.all_gather(every, mine)
    if any(not torch.equal(mine, other) for other in every):
        raise InrkitError("the ranks' parameters have diverged; this is a bug in the distributed setup.")


def _snapshot(*, step, consumed, model, optimizer, out, run_dir, options, training, pictures) -> None:
    """Model artifact, training state and pictures (rank 0), after checking the ranks agree."""
    _check_in_sync(model)
    if runtime.is_rank0():
        metrics = dict(step=step, images=consumed)
        artifacts.save(out, artifacts.Artifact(kind="functa-model", tensors=model.state_dict(),
                                               config=dict(model=model.config), options=options, metrics=metrics))
        _save_state(run_dir / "state.safetensors", model, optimizer, training, step, consumed)
        _save_pictures(run_dir, model, pictures, step, options["inner_steps"])
    if runtime.world_size() > 1:  # the other ranks read OUT next (functasets); wait until it is written
        torch.distributed.barrier()


def _save_state(path: Path, model, optimizer, training: dict, step: int, consumed: int) -> None:
    """Everything a resume needs, as tensors and JSON (nothing pickled)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for i, state in opt["state"].items():
        tensors.update({f"adam.{i}.{k}": torch.as_tensor(v) for k, v in state.items()})
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    artifacts.save(path, artifacts.Artifact(kind="meta-state", tensors=tensors, config=dict(training=training),
                                            options=dict(param_groups=opt["param_groups"]),
                                            metrics=dict(step=step, images=consumed)))


def _resume(path: Path, model, optimizer, training: dict) -> tuple[int, int]:
    """Load the state if there is one (refusing a changed configuration); return (step, images consumed)."""
    if not path.is_file():
        return 0, 0
    state = artifacts.read(path, kind="meta-state")
    runtime.refuse_changed_options(path.parent, state.config.get("training", {}), training, TRAINING_KEYS)
    model.load_state_dict({k[6:]: v for k, v in state.tensors.items() if k.startswith("model.")})
    opt_state: dict = {}
    for key, value in state.tensors.items():
        if key.startswith("adam."):
            _, i, name = key.split(".", 2)
            opt_state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict(dict(state=opt_state, param_groups=state.options["param_groups"]))
    torch.set_rng_state(state.tensors["rng.cpu"])
    if "rng.cuda" in state.tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(state.tensors["rng.cuda"])
    print0(f"resuming {path.parent} from step {state.metrics['step']}")
    return int(state.metrics["step"]), int(state.metrics["images"])


def _save_pictures(run_dir: Path, model, images: torch.Tensor, step: int, inner_steps: int) -> None:
    """Targets (top row) above their inner-loop reconstructions (bottom row), and the PSNR curve."""
    z, _ = encode(model, images, inner_steps)
    recon = decode(model, z)
    rows = [torch.cat(list((x + 1) / 2 if i == 0 else x), dim=2) for i, x in enumerate((images, recon))]
    sheet = torch.cat(rows, dim=1).permute(1, 2, 0).cpu()
    zoom = max(1, 96 // images.shape[-1])  # small images are enlarged so the picture is readable
    save_png(run_dir / f"reconstructions-{step:07d}.png", sheet.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1))
    lines = (run_dir / "stats.jsonl").read_text().splitlines() if (run_dir / "stats.jsonl").is_file() else []
    history = [json.loads(line) for line in lines if line.strip()]
    if history:
        plot_curve(run_dir / "psnr.png", [h["step"] for h in history], [h["psnr"] for h in history], "outer step",
                   f"PSNR after {inner_steps} inner steps (dB)", "meta-learning")


def _heldout_dataset(data: str, heldout: str | None, count: int | None, resolution: int, channels: int):
    """The held-out images: --heldout, or a builtin set's heldout split (the training spec with its split and,
    when --heldout-count is given, its count dropped); None when there are none."""
    from urllib.parse import urlencode

    from inrkit.data import open_dataset
    from inrkit.data.builtin import parse_spec

    if heldout is not None:
        return open_dataset(heldout, resolution, channels, count=count)
    if not data.startswith("builtin:"):
        return None
    name, query = parse_spec(data)
    query = {k: v for k, v in query.items() if k != "split" and not (k == "count" and count is not None)}
    spec = f"builtin:{name}" + (f"?{urlencode(query)}" if query else "")
    return open_dataset(spec, resolution, channels, split="heldout", count=count)


def _final_functasets(model, out: Path, run_dir: Path, dataset, data, heldout, heldout_count, resolution, channels,
                      steps: int, batch: int, workers: int, progress: bool) -> dict:
    """Encode the training and held-out sets with the final model (Sec. 4: 3 steps from zero)."""
    metrics = {}
    held = _heldout_dataset(data, heldout, heldout_count, resolution, channels)
    for name, ds in (("train", dataset), ("heldout", held)):
        if ds is None:
            print0("no held-out images (pass --heldout); only the training functaset is written.")
            continue
        path = run_dir / f"functaset-{name}.safetensors"
        if _up_to_date(path, out, ds):
            m = artifacts.read(path, kind="functaset").metrics
            print0(f"{path} is up to date with {out}; not encoding it again.")
        else:
            m = write_functaset(path, model.eval(), out, ds, steps=steps, batch=batch, workers=workers,
                                progress=progress, options=dict(model=str(out), data=ds.spec, split=ds.split,
                                                                steps=steps))
        metrics[f"{name}_psnr"] = m["psnr"]
        print0(f"{name}: {m['count']} images, PSNR {m['psnr']:.2f} dB after {steps} steps -> {path}")
    return metrics


def _up_to_date(path: Path, model_path: Path, dataset) -> bool:
    """A functaset already encoded from this very model file and these images (a rerun of a finished run)."""
    if not path.is_file():
        return False
    art = artifacts.read(path, kind="functaset")
    return (art.config.get("model_sha256") == artifacts.sha256(model_path)
            and art.config.get("data", {}).get("fingerprint") == dataset.fingerprint)


def load_recipe(path: str | Path) -> dict:
    """A recipe file (JSON): {"options": {...}, "variants": {name: {...}}}; 'FILE#NAME' applies a variant."""
    text, _, variant = str(path).partition("#")
    try:
        recipe = json.loads(Path(text).read_text())
    except FileNotFoundError:
        raise InrkitError(f"recipe {text} does not exist.") from None
    except ValueError:
        raise InrkitError(f"recipe {text} is not valid JSON.") from None
    options = dict(recipe.get("options", {}))
    if variant:
        variants = recipe.get("variants", {})
        if variant not in variants:
            raise InrkitError(f"recipe {text} has no variant {variant!r}; it has {', '.join(variants) or 'none'}.")
        options.update(variants[variant])
    known = set(inspect.signature(meta).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise InrkitError(f"recipe {text} sets unknown option {unknown[0]!r}.")
    return options


def meta_with_recipe(recipe: str | Path | None, **given) -> dict:
    """Run `meta` with the recipe's options, overridden by the options given here (the command line)."""
    options = load_recipe(recipe) if recipe else {}
    options.update(given)
    for key in ("data", "out"):
        if options.get(key) is None:
            raise InrkitError(f"--{key} is needed (neither given nor set by the recipe).")
    return meta(**options)
