"""`inrkit train-diffusion`: DDPM on a functaset's latents (spatial functa App. C "Generation"; App. B.1 for flat;
GINR Sec. 4.4 and App. A.3 for token functasets).

Reads the training functaset (labels when present, or as --cond/--no-cond say), standardises its latents
(App. C.4.1: z~ = (z - mu) / (gamma sigma), statistics over the training set), and trains the denoiser on the one
loop. The functaset's kind picks the family (LATENT_KINDS): a spatial `functaset` trains --arch unet or mlp into a
`diffusion` artifact; a GINR token functaset (`ginr-functaset`, (N, R, d) tokens) trains --arch transformer into
a `ginr-diffusion` artifact; any other pairing is refused in one sentence before anything is written. Every
snapshot writes OUT (EMA weights, statistics, schedule, the embedded decoder and its sha256; with
--keep-snapshots also RUN/diffusion-STEP.safetensors) and RUN/samples-STEP.png (DDIM samples of the EMA decoded
through the decoder; a conditional model draws sample k of class k mod classes); RUN is OUT without its suffix
and holds state.safetensors and stats.jsonl. Rerunning the same command resumes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.checks import require_at_least, require_choice, require_positive, require_writable
from inrkit.core.config import build, options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.runtime import parameters_sha256, pick_device, print0, seed_all
from inrkit.models import diffusion as D
from inrkit.models import diffusion_family as family
from inrkit.models import functa_family, ginr_family, token_diffusion_family
from inrkit.models.token_diffusion import TokenTransformer, transformer_config
from inrkit.models.unet import build_denoiser, unet_config
from inrkit.stages.configs import DiffusionConfig
from inrkit.stages.train_classifier import Latents, read_functaset
from inrkit.train.diffusion import DiffusionObjective
from inrkit.train.loop import Run, Schedule, resume, training_loop


def train_diffusion(data: str, out: Path, **options) -> dict:
    """Train (or resume) a diffusion model on the functaset `data`; write the artifact; return summary metrics.
    `options` are DiffusionConfig's fields (inrkit/stages/configs.py)."""
    cfg = build(DiffusionConfig, data=data, out=Path(out), **options)
    _check_options(cfg)
    kind = latent_kind(cfg.data, cfg.arch)
    train, sha, classes = kind.read(cfg.data)
    has_labels = train.labels is not None and not bool((train.labels < 0).any())
    if cfg.cond and not has_labels:
        raise InrkitError(f"{cfg.data} has no class labels, so --cond cannot train a conditional model; encode it "
                          "with --labels or pass --no-cond.")
    conditional = has_labels if cfg.cond is None else cfg.cond
    if cfg.cond is None and not has_labels:
        print0(f"{cfg.data} has no class labels: training an unconditional model (encode with --labels for a "
               "conditional one).")
    dev = pick_device(cfg.device)
    runtime.init_distributed(dev)
    latent = "x".join(str(v) for v in train.latents.shape[1:])
    _check_resumed_latent(cfg, latent)
    objective, (latents, labels) = _setup(cfg, kind, train, sha, classes if conditional else [], conditional, dev)
    run = Run(run_dir=cfg.out.with_suffix(""), training=dict(resume_options(cfg), latent=latent),
              device=dev, progress=cfg.progress, retry=f"a lower --lr (e.g. {cfg.lr / 2:g})")
    pos = resume(objective, run)
    schedule = Schedule(total_images=cfg.steps * cfg.batch, batch=cfg.batch, tick_images=cfg.tick * cfg.batch,
                        snapshot_images=cfg.snapshot * cfg.batch, seconds=cfg.seconds)
    pos = training_loop(objective, _batches(latents, labels, cfg), schedule, run, cfg.out, pos)
    print0(f"trained {pos['step']} steps -> {cfg.out}")
    return dict(step=pos["step"], run_seconds=time.perf_counter() - run.started,
                parameters_sha256=parameters_sha256(objective.ema.net))


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise InrkitError(f"--{option} {text!r} is not a comma-separated list of integers.") from None


def _check_options(cfg: DiffusionConfig) -> None:
    require_writable(cfg.out, ".safetensors")
    require_at_least(1, batch=cfg.batch, steps=cfg.steps, tick=cfg.tick, snapshot=cfg.snapshot, channels=cfg.channels,
                     res_blocks=cfg.res_blocks, heads=cfg.heads, mlp_width=cfg.mlp_width, mlp_blocks=cfg.mlp_blocks,
                     samples=cfg.samples, sample_steps=cfg.sample_steps, width=cfg.width, depth=cfg.depth)
    require_positive(lr=cfg.lr, gamma=cfg.gamma, timestep_ratio=cfg.timestep_ratio, seconds=cfg.seconds)
    if cfg.guidance < 0:
        raise InrkitError(f"--guidance must be at least 0, got {cfg.guidance}.")
    require_choice("arch", cfg.arch, ARCHS)
    require_choice("schedule", cfg.schedule, D.SCHEDULES)
    require_choice("prediction", cfg.prediction, D.PREDICTIONS)
    require_choice("normalisation", cfg.normalisation, D.NORMALISATIONS)
    for name, value in (("dropout", cfg.dropout), ("label_dropout", cfg.label_dropout), ("ema_decay", cfg.ema_decay)):
        if not 0 <= value < 1:
            raise InrkitError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}.")
    if not _ints(cfg.channel_mult, "channel-mult"):
        raise InrkitError("--channel-mult needs at least one multiplier, e.g. 1,2.")
    width = ("width", cfg.width) if cfg.arch == "transformer" else ("channels", cfg.channels)
    if width[1] % cfg.heads:
        raise InrkitError(f"--{width[0]} {width[1]} does not split into --heads {cfg.heads}.")
    if cfg.batch % runtime.world_size():
        raise InrkitError(f"--batch {cfg.batch} does not split evenly over {runtime.world_size()} processes.")


def _check_resumed_latent(cfg: DiffusionConfig, latent: str) -> None:
    """A run folder resumed on a functaset of another latent shape (the same --data path, new contents) would
    not fit the saved denoiser: say which shapes differ."""
    state = cfg.out.with_suffix("") / "state.safetensors"
    if not state.is_file():
        return
    meta, _ = artifacts.read_header(state)
    before = artifacts.metadata_json(state, meta, "config").get("training", {}).get("latent")
    if before is not None and before != latent:
        raise InrkitError(f"{cfg.data} holds {latent} latents, but {state.parent} was trained on {before} latents; "
                          "choose another --out for this functaset.")


def _unet_config(cfg: DiffusionConfig, latent: list[int], classes: int) -> dict:
    """The network config, refusing a latent side the UNet cannot halve len(channel_mult) - 1 times."""
    mult = _ints(cfg.channel_mult, "channel-mult")
    s = latent[0]
    if cfg.arch == "unet" and s % 2 ** (len(mult) - 1):
        raise InrkitError(f"a {s}x{s} latent cannot be halved {len(mult) - 1} times by --channel-mult "
                          f"{cfg.channel_mult}; use fewer levels (or --arch mlp for flat functa).")
    return unet_config(latent=latent, classes=classes, arch=cfg.arch, channels=cfg.channels,
                       res_blocks=cfg.res_blocks, channel_mult=mult, attention=_ints(cfg.attention, "attention"),
                       heads=cfg.heads, dropout=cfg.dropout, mlp_width=cfg.mlp_width, mlp_blocks=cfg.mlp_blocks)


def _transformer_config(cfg: DiffusionConfig, latent: list[int], classes: int) -> dict:
    return transformer_config(latent=latent, classes=classes, width=cfg.width, depth=cfg.depth, heads=cfg.heads,
                              dropout=cfg.dropout)


@dataclass(frozen=True)
class LatentKind:
    """What train-diffusion does with one kind of functaset."""

    archs: tuple[str, ...]  # the --arch values that take its latents
    latents: str  # what its latents are, for the refusal
    read: Callable  # path -> (set with .latents, .labels, .model, the model file's sha256, class names)
    net_config: Callable  # (cfg, latent shape, classes) -> the denoiser config stored in the artifact
    net: Callable  # that config -> the denoiser network
    family: ModuleType  # diffusion_artifact and build of the artifact it writes


def _read_tokens(path: str | Path):
    art = artifacts.read(path, kind=ginr_family.SET_KIND)
    tokens, sha = ginr_family.build(art, path), art.config.get("model_sha256", "")
    if not sha:
        raise InrkitError(f"{path} does not record its GINR model's sha256, so a diffusion model cannot name it.")
    return tokens, sha, [str(c) for c in art.config.get("data", {}).get("classes", [])]


LATENT_KINDS = {
    functa_family.SET_KIND: LatentKind(("unet", "mlp"), "spatial functa latents", lambda p: read_functaset(
        p, labelled=False), _unet_config, build_denoiser, family),
    ginr_family.SET_KIND: LatentKind(("transformer",), "GINR latent tokens", _read_tokens, _transformer_config,
                                     TokenTransformer, token_diffusion_family),
}
ARCHS = tuple(a for kind in LATENT_KINDS.values() for a in kind.archs)


def latent_kind(data: str | Path, arch: str) -> LatentKind:
    """The LatentKind of the functaset `data`, refusing another kind of artifact, or an --arch that does not
    take its latents, in one sentence."""
    kind = artifacts.kind_of(data)
    if kind not in LATENT_KINDS:
        raise InrkitError(f"{data} is a {kind} artifact, but train-diffusion trains on a "
                          f"{' or a '.join(LATENT_KINDS)} artifact.")
    chosen = LATENT_KINDS[kind]
    if arch not in chosen.archs:
        raise InrkitError(f"--arch {arch} does not take {chosen.latents} ({data} is a {kind} artifact); use --arch "
                          f"{' or '.join(chosen.archs)}.")
    return chosen


def _setup(cfg: DiffusionConfig, kind: LatentKind, train, sha: str, classes: list, conditional: bool, dev):
    """(the objective: the denoiser (seeded), its EMA, Adam and the snapshot hook; (normalised latents (N,
    *latent), labels (N,)))."""
    n_classes = max(len(classes), int(train.labels.max()) + 1) if conditional else 0
    norm = D.Normaliser.fit(train.latents, cfg.normalisation, cfg.gamma)
    latents = norm.normalise(train.latents.float())
    settings = dict(schedule=cfg.schedule, steps=D.T_DEFAULT, prediction=cfg.prediction, ratio=cfg.timestep_ratio,
                    label_dropout=cfg.label_dropout, clip=float(latents.abs().max()))
    seed_all(cfg.seed)
    net = kind.net(kind.net_config(cfg, list(train.latents.shape[1:]), n_classes))
    denoiser = D.Denoiser(net, D.alpha_bar_schedule(cfg.schedule), prediction=cfg.prediction, classes=n_classes,
                          label_dropout=cfg.label_dropout,
                          probs=D.timestep_probabilities(D.T_DEFAULT, cfg.timestep_ratio)).to(dev).train()
    ema = copy.deepcopy(denoiser).eval().requires_grad_(False)
    noise = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + runtime.rank())
    options, functa = options_of(cfg), train.model
    parents = {str(cfg.data): artifacts.sha256(cfg.data)} if Path(cfg.data).is_file() else {}
    names = [str(c) for c in classes] or [str(k) for k in range(n_classes)]

    def snapshot(pos: dict) -> None:
        art = kind.family.diffusion_artifact(ema, norm, cfg.normalisation, settings, functa, sha, classes=names,
                                             parents=parents, options=options, metrics=dict(step=pos["step"]),
                                             guidance=cfg.guidance)
        artifacts.save(cfg.out, art)
        if cfg.keep_snapshots:
            artifacts.save(cfg.out.with_suffix("") / f"diffusion-{pos['step']:07d}.safetensors", art)
        _sample_grid(cfg, kind.family.build(art, cfg.out, dev), pos["step"])

    objective = DiffusionObjective(denoiser=denoiser, ema=ema, optimizer=torch.optim.Adam(net.parameters(), lr=cfg.lr),
                                   ema_decay=cfg.ema_decay, conditional=conditional, noise=noise,
                                   snapshot_hook=snapshot)
    labels = train.labels if conditional else torch.zeros(len(train.latents), dtype=torch.int64)
    return objective, (latents, labels)


def _sample_grid(cfg: DiffusionConfig, model, step: int) -> Path:
    """RUN/samples-STEP.png: DDIM samples 0..samples-1 of the EMA (a DiffusionModel or a TokenDiffusionModel),
    decoded at the training resolution."""
    n = model.denoiser.classes
    ids = list(range(cfg.samples))
    labels = torch.tensor([k % n for k in ids]) if n else None
    z = family.sample_latents(model, ids, cfg.seed, labels, None, "ddim", cfg.sample_steps)
    images = model.decode(z, model.resolution).clamp(0, 1).cpu()
    return save_png(cfg.out.with_suffix("") / f"samples-{step:07d}.png", image_grid(images, max(n, 8) if n else 8))


def _batches(latents: torch.Tensor, labels: torch.Tensor, cfg: DiffusionConfig):
    from inrkit.data import make_loader

    dataset, world = Latents(latents, labels), runtime.world_size()
    return lambda start: make_loader(dataset, cfg.batch // world, seed=cfg.seed, start=start // world, workers=0)
