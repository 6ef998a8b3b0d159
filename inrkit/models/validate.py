"""The checks functa-model, functaset and generator configs pass before any tensor is allocated (the families'
`build` and `render` call them).

A config comes from a file, so it may hold anything: each value must be of the type and within the range its
constructor accepts (the bounds are far above any real model), and the parameter count the config implies must
be the one the file holds, so a crafted config cannot ask for terabytes. The counts are closed forms of the
state dicts (inrkit.models.inrgan.count_params for the generator; tests/test_reliability.py checks them).
"""

from __future__ import annotations

from pathlib import Path

import torch

from inrkit.core.checks import Value, check_config
from inrkit.core.errors import InrkitError
from inrkit.models import inrgan
from inrkit.models.functa import COORDS, INTERPS, KERNELS, binary_bits

SIDE = Value(int, 1, 2**14)  # image and block resolutions
WIDTH = Value(int, 1, 2**14)  # channels of any layer
FUNCTA = dict(arch=Value(str, choices=("spatial-functa",)), latent=Value(list, 3, 3, items=Value(int, 1, 2**12)),
              resolution=SIDE, channels=Value(int, 1, 4), width=WIDTH, depth=Value(int, 2, 1024),
              w0=Value(float, 1e-6, 1e6), interp=Value(str, choices=INTERPS), kernel=Value(int, choices=KERNELS),
              coords=Value(str, choices=COORDS, optional=True))
GENERATOR = dict(  # a rule for every keyword of inrgan.generator_config (tests/test_reliability.py checks it)
    arch=Value(str, choices=inrgan.ARCHS), resolution=SIDE, blocks=Value(list, 1, 16, items=Value(list, 3, 3,
                                                                                                  items=SIDE)),
    z_dim=WIDTH, hyper_hidden=WIDTH, hyper_layers=Value(int, 1, 64), fmm_rank=Value(int, 1, 2**10),
    modulation=Value(str, choices=inrgan.MODULATIONS), fourier=Value(bool),
    fourier_features=Value(list, 1, 16, items=WIDTH, optional=True), fourier_scale=Value(float, -1e6, 1e6),
    multiscale=Value(bool), upsample=Value(str, choices=inrgan.UPSAMPLES), coord_skip=Value(bool),
    out_channels=Value(int, 1, 4), negative_slope=Value(float, -10, 10), w_avg_beta=Value(float, 0, 1),
)
MAX_BLOCK_LAYERS = 64  # layers per INR block


def _refuse(path, what: str) -> None:
    raise InrkitError(f"{path} has {what}; the file is damaged or foreign.")


def _model_checks(check, path, name: str):
    """The model's own consistency checks (a config builder's InrkitError), their sentence naming the file."""
    try:
        return check()
    except InrkitError as err:
        _refuse(path, f"a {name} config its model refuses ({str(err).rstrip('.')})")


def _check_numel(path, name: str, expected: int, held: int) -> None:
    if expected != held:
        _refuse(path, f"a {name} config that needs {expected:,} stored values but the file holds {held:,}")


def check_functa_config(config, held: int, path: str | Path) -> dict:
    """A spatial functa model config that builds a model of exactly `held` stored elements; returns it."""
    check_config(config, FUNCTA, path, "functa model config")
    s, s2, _ = config["latent"]
    if s != s2 or config["resolution"] % s:
        _refuse(path, "a functa latent grid that is not square or does not divide the image")
    _check_numel(path, "functa model", functa_numel(config), held)
    return config


def functa_numel(cfg: dict) -> int:
    """Elements of SpatialFuncta's state dict: latent-to-modulation conv, modulated SIREN, output, Meta-SGD rates."""
    s, _, c = cfg["latent"]
    w, depth, k = cfg["width"], cfg["depth"], cfg["kernel"]
    modulations = (depth - 1) * w
    in_dim = 2 if cfg["interp"] == "nearest" else 2 * binary_bits(cfg["resolution"])
    siren = (in_dim + 1) * w + (depth - 2) * (w + 1) * w + (w + 1) * cfg["channels"]
    return c * modulations * k * k + modulations + siren + s * s * c


def check_functaset(config: dict, tensors: dict[str, torch.Tensor], prefix: str, path: str | Path) -> None:
    """A functaset's model config, its embedded model (tensors under `prefix`, when any) and its latents
    (N, s, s, c) floats, labels and psnr (N,), all consistent."""
    embedded = sum(t.numel() for k, t in tensors.items() if k.startswith(prefix))
    model = config.get("model")
    check_config(model, FUNCTA, path, "functa model config")
    if embedded:
        check_functa_config(model, embedded, path)
    check_config({k: config.get(k) for k in ("model_path", "model_sha256")},
                 dict(model_path=Value(str, optional=True), model_sha256=Value(str, optional=True)), path)
    latents = tensors.get("latents")
    if latents is None or not latents.is_floating_point() or tuple(latents.shape[1:]) != tuple(model["latent"]):
        _refuse(path, f"no latents of shape (N, {', '.join(map(str, model['latent']))}) in floats")
    for name in ("labels", "psnr"):
        if name in tensors and tuple(tensors[name].shape) != (len(latents),):
            _refuse(path, f"{name} that do not match its {len(latents)} latents")


def check_generator_config(config, held: int, path: str | Path) -> dict:
    """An INR-GAN generator config (generator_config's keys) that builds a generator of exactly `held` stored
    elements (its parameters and w_avg); returns it."""
    check_config(config, GENERATOR, path, "generator config")
    if max(layers for _, layers, _ in config["blocks"]) > MAX_BLOCK_LAYERS:
        _refuse(path, f"a generator block of more than {MAX_BLOCK_LAYERS} layers")
    resolved = _model_checks(lambda: inrgan.generator_config(**config), path, "generator")
    _check_numel(path, "generator", inrgan.count_params(resolved)["total"] + resolved["hyper_hidden"], held)
    return config


# ---- families whose networks have no closed-form count: the count of the module built on the meta device
# (shapes only, no memory; the rules bound every loop its constructor runs).

LATENT = Value(list, 3, 3, items=Value(int, 1, 2**12))
CLASSIFIER = dict(arch=Value(str, choices=("transformer", "mlp")), latent=LATENT, classes=Value(int, 1, 2**20),
                  width=WIDTH, ffw=Value(int, 1, 2**16), depth=Value(int, 1, 64), heads=Value(int, 1, 1024),
                  dropout=Value(float, 0, 1), input_scale=Value(float, -1e6, 1e6), positional=Value(bool))
DENOISER = dict(latent=LATENT, classes=Value(int, 0, 2**20), arch=Value(str, choices=("unet", "mlp")),
                channels=Value(int, 1, 2**12), res_blocks=Value(int, 0, 8),
                channel_mult=Value(list, 1, 6, items=Value(int, 1, 64)),
                attention=Value(list, 0, 8, items=Value(int, 1, 2**12)), heads=Value(int, 1, 1024),
                dropout=Value(float, 0, 1), mlp_width=WIDTH, mlp_blocks=Value(int, 0, 64))
DIFFUSION = dict(schedule=Value(str, choices=("linear", "cosine")), steps=Value(int, 1, 10**4),
                 prediction=Value(str, choices=("eps", "x0")), ratio=Value(float, 1e-6, 1e6),
                 label_dropout=Value(float, 0, 1))


def meta_numel(build, path: str | Path, name: str) -> int:
    """Elements of the state dict of the module `build()` makes, built on the meta device: shapes, no memory.
    A config the constructor refuses (whatever it raises: nothing was allocated) is one sentence."""
    try:
        with torch.device("meta"):
            module = _model_checks(build, path, name)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, IndexError, KeyError) as err:
        raise InrkitError(f"{path} has a {name} config that builds no model ({str(err)[:60]}); the file is damaged "
                          "or foreign.") from None
    return sum(t.numel() for t in module.state_dict().values())


def _held(tensors: dict[str, torch.Tensor], prefix: str) -> int:
    return sum(t.numel() for k, t in tensors.items() if k.startswith(prefix))


def check_classifier_artifact(config: dict, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """A classifier artifact: its network's config (classifier_config's keys) and the functa model it embeds,
    each of exactly the size stored under its prefix (`classifier.`, `functa.`)."""
    from inrkit.models.classifier import FunctaClassifier, classifier_config

    net = check_config(config.get("classifier"), CLASSIFIER, path, "classifier config")
    _model_checks(lambda: classifier_config(**net), path, "classifier")
    if check_functa_config(config.get("functa"), _held(tensors, "functa."), path)["latent"] != net["latent"]:
        _refuse(path, "a classifier for latents of another shape than its functa model's")
    check_config({k: config.get(k) for k in ("functa_sha256", "classes")},
                 dict(functa_sha256=Value(str), classes=Value(list, 0, 2**20, items=Value(str), optional=True)), path)
    _check_numel(path, "classifier", meta_numel(lambda: FunctaClassifier(net), path, "classifier"),
                 _held(tensors, "classifier."))


def check_diffusion_artifact(config: dict, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """A diffusion artifact: the denoiser's config (unet_config's keys, its size as stored under `denoiser.`), the
    schedule, the normalisation (mu and sigma (1,), (c,) or (s, s, c)) and the embedded functa model."""
    from inrkit.models.unet import build_denoiser

    net = check_config(config.get("denoiser"), DENOISER, path, "denoiser config")
    check_config(config.get("diffusion"), DIFFUSION, path, "diffusion config", extra=True)
    check_config(config.get("normalisation"), dict(kind=Value(str), gamma=Value(float, 1e-12, 1e12)), path,
                 "normalisation config", extra=True)
    if check_functa_config(config.get("functa"), _held(tensors, "functa."), path)["latent"] != net["latent"]:
        _refuse(path, "a denoiser for latents of another shape than its functa model's")
    check_config({k: config.get(k) for k in ("functa_sha256", "functa_tensors_sha256", "classes")},
                 dict(functa_sha256=Value(str), functa_tensors_sha256=Value(str),
                      classes=Value(list, 0, 2**20, items=Value(str), optional=True)), path)
    s, _, c = net["latent"]
    for name in ("norm.mu", "norm.sigma"):
        t = tensors.get(name)
        if t is None or not t.is_floating_point() or tuple(t.shape) not in ((1,), (c,), (s, s, c)):
            _refuse(path, f"no {name} of shape (1,), ({c},) or ({s}, {s}, {c}) in floats")
    _check_numel(path, "denoiser", meta_numel(lambda: build_denoiser(net), path, "denoiser"),
                 _held(tensors, "denoiser."))
