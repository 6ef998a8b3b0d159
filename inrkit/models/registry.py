"""The registry of model families: who owns each artifact kind, how to rebuild it, and how to render it.

A family is a module that owns some artifact kinds (a constant each, e.g. `KIND = "generator"`) and provides
  build(art, path, device) -> object    the object an artifact holds, in eval mode (one read of the file); it
                                        checks the config before allocating anything (types, ranges, and
                                        the size it implies against the file: inrkit.models.validate)
  render_codes(obj, codes, shape, ranges=None, chunk=...) -> (B, *shape, C)
                                        THE render interface every INR family shares: a batch of B codes (a
                                        field: None, its one signal; a functaset: latents (B, s, s, c); a
                                        generator: INR parameters theta) evaluated on the pixel-centre grid of
                                        `shape` over `ranges` (inrkit.fields.grid), `chunk` points at a time,
                                        floats in [0, 1] (unclamped: pictures clamp when they are written)
  render(art, path, out, *, size, scale, grid, chunk, device, **options) -> Path
                                        `inrkit render`'s picture, written with inrkit.core.pictures; it
                                        accepts the options named in render_options and nothing else
and, if it makes samples to score, sampler(obj, *, seed, psi, estimate) -> inrkit.models.sampling.Sampler.
Training-time conventions stay the models' own (InrGanGenerator.forward returns (B, C, H, W) in [-1, 1] for the
GAN losses); render_codes adapts them.

Adding a family: write its module (constants, build, render_codes, render, optionally sampler), then add one
`Family(...)` entry to FAMILIES below. That is the only registration: `inrkit.load`, `inrkit render` and
`inrkit fid` find it here; nothing is registered at import time and no class is looked up by a string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.fields import family as fields
from inrkit.models import classifier_family as classifier
from inrkit.models import diffusion_family as diffusion
from inrkit.models import functa_family as functa
from inrkit.models import ginr_family as ginr
from inrkit.models import inrgan_family as inrgan
from inrkit.models import loegan_family as loegan
from inrkit.models import token_diffusion_family as token_diffusion
from inrkit.models.inrgan import InrGanGenerator
from inrkit.models.loegan import LoeGanGenerator


@dataclass(frozen=True)
class Family:
    """One model family: its kinds, its loader, its renderer (see the module docstring for the signatures)."""

    name: str
    kinds: tuple[str, ...]  # artifact kinds it owns (build rebuilds each)
    build: Callable  # (art, path, device) -> object in eval mode
    render_codes: Callable | None = None  # the render interface: (obj, codes, shape, ranges, chunk) -> (B, *shape, C)
    render: Callable | None = None  # `inrkit render`: (art, path, out, *, size, scale, grid, chunk, device, **options)
    render_kinds: tuple[str, ...] = ()  # the kinds `render` draws
    render_options: tuple[str, ...] = ()  # `inrkit render` options it takes beyond size, scale, grid, chunk, device
    sampler: Callable | None = None  # (obj, *, seed, psi, estimate) -> Sampler, for FID
    types: tuple[type, ...] = ()  # classes of the objects build returns that sampler accepts (FID of a module)


FAMILIES = (
    Family("fields", kinds=(fields.KIND,), build=fields.build, render_codes=fields.render_codes,
           render=fields.render, render_kinds=(fields.KIND,), render_options=fields.RENDER_OPTIONS),
    Family("spatial functa", kinds=(functa.MODEL_KIND, functa.SET_KIND), build=functa.build,
           render_codes=functa.render_codes, render=functa.render, render_kinds=(functa.SET_KIND,),
           render_options=functa.RENDER_OPTIONS),
    Family("INR-GAN", kinds=(inrgan.KIND,), build=inrgan.build, render_codes=inrgan.render_codes,
           render=inrgan.render, render_kinds=(inrgan.KIND,), render_options=inrgan.RENDER_OPTIONS,
           sampler=inrgan.sampler, types=(InrGanGenerator,)),
    Family("classifier", kinds=(classifier.KIND,), build=classifier.build),
    Family("diffusion", kinds=(diffusion.KIND,), build=diffusion.build, render_codes=diffusion.render_codes,
           render=diffusion.render, render_kinds=(diffusion.KIND,), render_options=diffusion.RENDER_OPTIONS,
           sampler=diffusion.sampler),
    Family("GINR", kinds=(ginr.MODEL_KIND, ginr.SET_KIND), build=ginr.build, render_codes=ginr.render_codes,
           render=ginr.render, render_kinds=(ginr.SET_KIND,), render_options=ginr.RENDER_OPTIONS),
    Family("LoE-GAN", kinds=(loegan.KIND,), build=loegan.build, render_codes=loegan.render_codes,
           render=loegan.render, render_kinds=(loegan.KIND,), render_options=loegan.RENDER_OPTIONS,
           sampler=loegan.sampler, types=(LoeGanGenerator,)),
    Family("GINR token diffusion", kinds=(token_diffusion.KIND,), build=token_diffusion.build,
           render_codes=token_diffusion.render_codes, render=token_diffusion.render,
           render_kinds=(token_diffusion.KIND,), render_options=token_diffusion.RENDER_OPTIONS,
           sampler=token_diffusion.sampler),
)


def known_kinds(role: Callable[[Family], tuple[str, ...]] = lambda f: f.kinds) -> tuple[str, ...]:
    """Every kind the families own; `role` picks another set, e.g. `lambda f: f.render_kinds`."""
    return tuple(k for f in FAMILIES for k in role(f))


def family_of(kind: str, path: str | Path = "this file") -> Family:
    """The family owning `kind`; an unknown kind is refused in one sentence naming the kinds known."""
    for family in FAMILIES:
        if kind in family.kinds:
            return family
    raise InrkitError(f"{path} is a {kind} artifact, which this version of inrkit cannot rebuild (it knows "
                      f"{', '.join(known_kinds())}).")


def family_for(obj) -> Family:
    """The family whose `types` the object is an instance of (a model handed over in memory)."""
    for family in FAMILIES:
        if family.types and isinstance(obj, family.types):
            return family
    raise InrkitError(f"no model family takes a {type(obj).__name__} object.")


def load(path: str | Path, kind: str | None = None, device: torch.device | str = "cpu"):
    """Rebuild the object an artifact holds (a field you call on coordinates, a generator, a functa model, a
    functaset), in eval mode on `device`. `kind` insists on one kind. The file is read once."""
    found = artifacts.kind_of(path)
    if kind is not None and found != kind:
        raise InrkitError(f"{path} is a {found} artifact, but a {kind} artifact is needed here.")
    family = family_of(found, path)
    return family.build(artifacts.read(path, found), path, torch.device(device))
