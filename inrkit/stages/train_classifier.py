"""`inrkit train-classifier`: a classifier on a functaset (spatial functa App. C; flat functa App. B.1).

Writes OUT (kind `classifier`: the EMA weights, the embedded functa model, its sha256 and the class names) at every
snapshot, and a run folder OUT without its suffix holding state.safetensors, stats.jsonl (loss, train top-1 and,
with --eval, held-out top-1/top-5 of the EMA per tick) and accuracy.png. Rerunning the same command resumes.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.checks import require_at_least, require_positive, require_writable
from inrkit.core.config import build, options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import plot_curve
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import parameters_sha256, pick_device, print0, seed_all
from inrkit.models import functa_family
from inrkit.models.classifier import FunctaClassifier, classifier_config
from inrkit.models.classifier_family import classifier_artifact
from inrkit.stages.configs import ClassifierConfig
from inrkit.train.classify import ClassifierObjective, accuracy, warmup_cosine
from inrkit.train.loop import Run, Schedule, resume, training_loop


class Latents(torch.utils.data.Dataset):
    """A functaset's (latent, label) pairs for the loader: the same resumable, rank-split stream as images."""

    def __init__(self, latents: torch.Tensor, labels: torch.Tensor):
        self.latents, self.labels = latents, labels

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, i: int):
        return self.latents[i], int(self.labels[i])


def read_functaset(path: str | Path, *, labelled: bool = True):
    """(Functaset, model sha256, class names), refusing a functaset without labels when they are needed."""
    art = artifacts.read(path, kind=functa_family.SET_KIND)
    art_set, info = functa_family.build(art, path), art.config
    if labelled and (art_set.labels is None or bool((art_set.labels < 0).any())):
        raise InrkitError(f"{path} has no class labels; encode it with --labels (or meta on labelled data).")
    sha = info.get("model_sha256", "")
    if not sha:
        raise InrkitError(f"{path} does not record its functa model's sha256, so a classifier cannot name it.")
    return art_set, sha, list(info.get("data", {}).get("classes", []))


def train_classifier(data: str, out: Path, **options) -> dict:
    """Train (or resume) a classifier on the functaset `data`; write the artifact; return summary metrics.
    `options` are ClassifierConfig's fields (inrkit/stages/configs.py)."""
    cfg = build(ClassifierConfig, data=data, out=Path(out), **options)
    _check_options(cfg)
    train, sha, classes = read_functaset(cfg.data)
    return fit_classifier(cfg, train, sha, classes, _eval_set(cfg, sha))


def fit_classifier(cfg: ClassifierConfig, train, sha: str, classes: list[str], held=None) -> dict:
    """The training itself, on latents already read: `train` and `held` hold .latents (N, s, s, c), .labels (N,)
    and (train) .model, the functa model embedded in the artifact, whose file sha256 is `sha`."""
    dev = pick_device(cfg.device)
    runtime.init_distributed(dev)
    objective = _setup(cfg, train, sha, classes, held, dev)
    run = Run(run_dir=cfg.out.with_suffix(""), training=resume_options(cfg),
              device=dev, progress=cfg.progress, retry=f"a lower --lr (e.g. {cfg.lr / 2:g})")
    pos = resume(objective, run)
    schedule = Schedule(total_images=cfg.steps * cfg.batch, batch=cfg.batch, tick_images=cfg.tick * cfg.batch,
                        snapshot_images=cfg.snapshot * cfg.batch, seconds=cfg.seconds)
    pos = training_loop(objective, _batches(train, cfg), schedule, run, cfg.out, pos)
    metrics = dict(step=pos["step"], run_seconds=time.perf_counter() - run.started,
                   parameters_sha256=parameters_sha256(objective.ema))
    metrics.update({k: pos[k] for k in ("eval_top1", "eval_top5") if k in pos})
    shown = f", held-out top-1 {pos['eval_top1']:.4f}" if "eval_top1" in pos else ""
    print0(f"trained {pos['step']} steps{shown} -> {cfg.out}")
    return metrics


def _check_options(cfg: ClassifierConfig) -> None:
    require_writable(cfg.out, ".safetensors")
    require_at_least(1, batch=cfg.batch, steps=cfg.steps, tick=cfg.tick, snapshot=cfg.snapshot, warmup=cfg.warmup)
    require_positive(lr=cfg.lr, seconds=cfg.seconds)
    require_at_least(0, weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
                     input_scale=cfg.input_scale)
    if not 0 <= cfg.ema_decay < 1:
        raise InrkitError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay}.")
    if cfg.batch % runtime.world_size():
        raise InrkitError(f"--batch {cfg.batch} does not split evenly over {runtime.world_size()} processes.")


def _eval_set(cfg: ClassifierConfig, sha: str):
    """The held-out functaset, checked to come from the same functa model as the training one."""
    if cfg.eval is None:
        return None
    held, held_sha, _ = read_functaset(cfg.eval)
    if held_sha != sha:
        raise InrkitError(f"{cfg.eval} was encoded with another functa model than {cfg.data} (sha256 differs).")
    return held


def _setup(cfg: ClassifierConfig, train, sha: str, classes: list, held, dev) -> ClassifierObjective:
    """The classifier (seeded), its EMA, AdamW and the schedule, as the objective."""
    n_classes = max(len(classes), int(train.labels.max()) + 1)
    # The paper's factor fits its latents' scale; the scale of meta-learned latents depends on the learned
    # Meta-SGD rates, so 0 measures it: 1 / std over the training functaset (stored in the config).
    scale = cfg.input_scale or 1.0 / max(train.latents.float().std().item(), 1e-12)
    config = classifier_config(latent=list(train.latents.shape[1:]), classes=n_classes, arch=cfg.arch,
                               width=cfg.width, ffw=cfg.ffw, depth=cfg.depth, heads=cfg.heads, dropout=cfg.dropout,
                               input_scale=scale, positional=cfg.positional)
    seed_all(cfg.seed)
    net = FunctaClassifier(config).to(dev).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(net.decay_groups(cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.steps, cfg.warmup))
    options = options_of(cfg)
    parents = {str(cfg.data): artifacts.sha256(cfg.data)} if Path(cfg.data).is_file() else {}

    def snapshot(pos: dict) -> None:
        metrics = dict(step=pos["step"], **{k: pos[k] for k in ("eval_top1", "eval_top5") if k in pos})
        art = classifier_artifact(ema, train.model, sha, classes=classes, parents=parents, options=options,
                                  metrics=metrics)
        artifacts.save(cfg.out, art)
        _plot(cfg.out.with_suffix(""))

    evaluate = None
    if held is not None:
        def evaluate(model):
            top1, top5, _ = accuracy(model, held.latents, held.labels)
            return dict(eval_top1=top1, eval_top5=top5)
    return ClassifierObjective(net=net, ema=ema, optimizer=optimizer, scheduler=scheduler,
                               label_smoothing=cfg.label_smoothing, ema_decay=cfg.ema_decay,
                               snapshot_hook=snapshot, evaluate=evaluate,
                               precision=resolve_precision(cfg.precision, dev), compile=cfg.compile)


def _batches(train, cfg: ClassifierConfig):
    from inrkit.data import make_loader

    dataset = Latents(train.latents, train.labels)
    world = runtime.world_size()
    return lambda start: make_loader(dataset, cfg.batch // world, seed=cfg.seed, start=start // world, workers=0)


def _plot(run_dir: Path) -> None:
    """Training and held-out top-1 against steps, from stats.jsonl."""
    lines = (run_dir / "stats.jsonl").read_text().splitlines() if (run_dir / "stats.jsonl").is_file() else []
    history = [json.loads(line) for line in lines if line.strip()]
    if history:
        key = "eval_top1" if "eval_top1" in history[-1] else "top1"
        plot_curve(run_dir / "accuracy.png", [h["step"] for h in history], [h[key] for h in history], "step",
                   "held-out top-1" if key == "eval_top1" else "training top-1", "train-classifier")
