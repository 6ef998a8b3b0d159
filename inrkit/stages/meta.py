"""`inrkit meta`: meta-learn (spatial) functa on a dataset, then encode it to functasets; or, with --arch ginr,
train the locality-aware generalizable INR (inrkit/stages/meta_ginr.py: kind `ginr-model`, and token functasets).

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

import time
from pathlib import Path

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.checks import require_at_least, require_choice, require_writable
from inrkit.core.config import build, options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import parameters_sha256, pick_device, print0, seed_all
from inrkit.models import ginr_family
from inrkit.models.functa import SpatialFuncta, check_latent_fits, parse_latent
from inrkit.models.functa_family import SET_KIND
from inrkit.stages import meta_ginr
from inrkit.stages.configs import MetaConfig
from inrkit.stages.encode import write_functaset, write_token_functaset
from inrkit.train.loop import Run, Schedule, resume, training_loop
from inrkit.train.metalearn import MetaObjective

ARCHS = ("spatial-functa", "functa", "ginr")  # ginr: inrkit/stages/meta_ginr.py
PICTURE_ITEMS = 8  # training images shown in each snapshot picture


def meta(data: str, out: Path, **options) -> dict:
    """Meta-learn the shared parameters, write the model and functasets; return summary metrics.
    `options` are MetaConfig's fields (inrkit/stages/configs.py); rerunning the same call resumes."""
    cfg = build(MetaConfig, data=data, out=Path(out), **options)
    out, batch, options = cfg.out, cfg.batch, options_of(cfg)
    shape = _check_options(cfg)
    dev = pick_device(cfg.device)
    runtime.init_distributed(dev)
    objective, dataset = _setup(cfg, shape, dev, options)
    run = Run(run_dir=out.with_suffix(""), training=resume_options(cfg), device=dev,
              progress=cfg.progress, retry=f"a lower --lr (e.g. {cfg.lr / 2:g})")
    pos = resume(objective, run)
    schedule = Schedule(total_images=cfg.steps * batch, batch=batch, tick_images=cfg.tick * batch,
                        snapshot_images=cfg.snapshot * batch, seconds=cfg.seconds)
    pos = training_loop(objective, _batches(dataset, cfg), schedule, run, out, pos)
    seconds_run = time.perf_counter() - run.started
    done = (pos["images"] - run.start_images) // batch
    print0(f"meta-learned {pos['step']} steps ({done} in this run, {seconds_run:.0f} s) -> {out}")
    metrics = dict(step=pos["step"], run_steps=done, run_seconds=seconds_run,
                   parameters_sha256=parameters_sha256(objective.model))
    if cfg.functasets:
        metrics.update(_final_functasets(objective.model, out, run.run_dir, dataset, cfg))
    return metrics


def _setup(cfg, shape, dev, options: dict):
    """The model (seeded), its optimizer and the snapshot pictures, as the objective; and the dataset."""
    from inrkit.data import open_dataset

    seed_all(cfg.seed)
    model = None if cfg.arch == "ginr" else SpatialFuncta(shape, cfg.resolution, cfg.channels, cfg.width, cfg.depth,
                                                          cfg.w0, cfg.interp, cfg.kernel, cfg.coords,
                                                          cfg.siren_bias).to(dev)
    dataset = open_dataset(cfg.data, cfg.resolution, cfg.channels, labels=cfg.labels, count=cfg.count)
    if model is None:
        return meta_ginr.setup(cfg, dev, options, dataset), dataset
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    pictures = torch.stack([dataset[i][0] for i in range(min(PICTURE_ITEMS, len(dataset)))]).to(dev)
    objective = MetaObjective(model=model, optimizer=optimizer, inner_steps=cfg.inner_steps,
                              first_order=cfg.first_order, checkpointed=cfg.checkpointed, out=Path(cfg.out),
                              run_dir=Path(cfg.out).with_suffix(""), options=options, pictures=pictures,
                              precision=resolve_precision(cfg.precision, dev), compile=cfg.compile)
    return objective, dataset


def _batches(dataset, cfg):
    """This rank's share of the one global stream of images, from global image `start` on."""
    from inrkit.data import make_loader

    world = runtime.world_size()
    return lambda start: make_loader(dataset, cfg.batch // world, seed=cfg.seed, start=start // world,
                                     workers=cfg.workers, device=pick_device(cfg.device))


def _check_options(cfg) -> tuple[int, int, int] | None:
    """Fail fast, in one sentence, on options that cannot work; the functa latent shape (None for ginr)."""
    require_writable(cfg.out, ".safetensors")
    require_choice("arch", cfg.arch, ARCHS)
    shape = None
    if cfg.arch == "ginr":
        meta_ginr.model_config(cfg)  # patch, fraction and the model's sizes
    else:
        shape = parse_latent(cfg.latent)
        if cfg.arch == "functa" and shape[0] != 1:
            raise InrkitError(f"--arch functa has a flat latent; write --latent {shape[2]} or use spatial-functa.")
        check_latent_fits(shape, cfg.resolution)
    require_at_least(1, batch=cfg.batch, steps=cfg.steps, snapshot=cfg.snapshot, tick=cfg.tick)
    require_at_least(0, inner_steps=cfg.inner_steps)
    if cfg.seconds is not None and not cfg.seconds > 0:
        raise InrkitError(f"--seconds must be positive, got {cfg.seconds}.")
    if cfg.batch % runtime.world_size():
        raise InrkitError(f"--batch {cfg.batch} does not split evenly over {runtime.world_size()} processes.")
    return shape


def _heldout_dataset(data: str, heldout: str | None, count: int | None, resolution: int, channels: int,
                     labels: bool = False):
    """The held-out images: --heldout, or a builtin set's heldout split (the training spec with its split and,
    when --heldout-count is given, its count dropped); None when there are none."""
    from urllib.parse import urlencode

    from inrkit.data import open_dataset
    from inrkit.data.builtin import parse_spec

    if heldout is not None:
        return open_dataset(heldout, resolution, channels, labels=labels, count=count)
    if not data.startswith("builtin:"):
        return None
    name, query = parse_spec(data)
    query = {k: v for k, v in query.items() if k != "split" and not (k == "count" and count is not None)}
    spec = f"builtin:{name}" + (f"?{urlencode(query)}" if query else "")
    return open_dataset(spec, resolution, channels, labels=labels, split="heldout", count=count)


def _final_functasets(model, out: Path, run_dir: Path, dataset, cfg) -> dict:
    """Encode the training and held-out sets with the final model (Sec. 4: 3 steps from zero; --arch ginr: token
    functasets, one forward pass of its encoder)."""
    metrics, steps, ginr = {}, cfg.encode_steps, cfg.arch == "ginr"
    kind, how = (ginr_family.SET_KIND, "in one forward pass") if ginr else (SET_KIND, f"after {steps} steps")
    held = _heldout_dataset(cfg.data, cfg.heldout, cfg.heldout_count, cfg.resolution, cfg.channels, cfg.labels)
    for name, ds in (("train", dataset), ("heldout", held)):
        if ds is None:
            print0("no held-out images (pass --heldout); only the training functaset is written.")
            continue
        path = run_dir / f"functaset-{name}.safetensors"
        if _up_to_date(path, out, ds, cfg.labels, kind):
            m = artifacts.read(path, kind=kind).metrics
            print0(f"{path} is up to date with {out}; not encoding it again.")
        elif ginr:
            made = dict(model=str(out), data=ds.spec, split=ds.split, labels=cfg.labels)
            m = write_token_functaset(path, model.eval(), out, ds, batch=cfg.encode_batch, workers=cfg.workers,
                                      progress=cfg.progress, options=made)
        else:
            made = dict(model=str(out), data=ds.spec, split=ds.split, steps=steps, labels=cfg.labels)
            m = write_functaset(path, model.eval(), out, ds, steps=steps, batch=cfg.encode_batch,
                                workers=cfg.workers, progress=cfg.progress, options=made)
        metrics[f"{name}_psnr"] = m["psnr"]
        print0(f"{name}: {m['count']} images, PSNR {m['psnr']:.2f} dB {how} -> {path}")
    return metrics


def _up_to_date(path: Path, model_path: Path, dataset, labels: bool, kind: str = SET_KIND) -> bool:
    """A functaset already encoded from this very model file and these images, with labels as asked (a rerun of
    a finished run)."""
    if not path.is_file():
        return False
    art = artifacts.read(path, kind=kind)
    return (art.config.get("model_sha256") == artifacts.sha256(model_path)
            and art.config.get("data", {}).get("fingerprint") == dataset.fingerprint
            and bool(art.options.get("labels", False)) == labels)
