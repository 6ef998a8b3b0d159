"""Training state as one safetensors file in the run folder: modules, optimizer states, schedulers, RNG,
the position in training and the options that must match to resume. Nothing is pickled.

Tensor names: `{module}.{param}` for each module, `{optimizer}.{param index}.{state key}` for each optimizer's
per-parameter state, `rng.cpu` (and `rng.cuda` where CUDA is in use), `rng.{name}` for each explicit
torch.Generator an objective draws from. Optimizer param groups, scheduler states
and the position are JSON in the metadata.

CUDA RNG under torchrun: rank 0 writes the state of its own device and every rank restores it into its own
(current) device. That is exact because every rank seeds its CUDA generator alike (seed_all) and draws from it
alike: what differs per rank (latents, data order, pixels) comes from numpy or from the explicit generators.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import Value, check_config
from inrkit.core.errors import InrkitError
from inrkit.core.runtime import print0, refuse_changed_options

KIND = "train-state"
COUNT = Value(int, 0, 2**62)
POSITION = dict(step=COUNT, images=COUNT, tick=COUNT, tick_images=COUNT, snapshot_images=COUNT)  # and extras


def save_state(path: Path, modules: dict, optimizers: dict, schedulers: dict, training: dict, pos: dict,
               generators: dict | None = None) -> None:
    """Write everything a resume needs (atomically, as every artifact)."""
    tensors = {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    groups = {}
    for name, opt in optimizers.items():
        state = opt.state_dict()
        for i, s in state["state"].items():
            tensors.update({f"{name}.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
        groups[name] = state["param_groups"]
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    for name, gen in (generators or {}).items():
        tensors[f"rng.{name}"] = gen.get_state()
    sched = {name: s.state_dict() for name, s in schedulers.items()}
    artifacts.save(path, artifacts.Artifact(kind=KIND, tensors=tensors, config=dict(training=training),
                                            options=dict(param_groups=groups, schedulers=sched), metrics=dict(pos)))


def _optimizer_state(tensors: dict, name: str) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith(name + "."):
            _, i, field = key.split(".", 2)
            state.setdefault(int(i), {})[field] = value
    return state


def load_state(path: Path, modules: dict, optimizers: dict, schedulers: dict, training: dict,
               generators: dict | None = None) -> dict | None:
    """Restore the state if `path` exists (refusing changed training options); return the position, else None."""
    if not path.is_file():
        return None
    state = artifacts.read(path, kind=KIND)
    pos = check_config(state.metrics, POSITION, path, "training position", extra=True)
    try:
        refuse_changed_options(path.parent, dict(state.config.get("training", {})), training, list(training))
        _restore(state, modules, optimizers, schedulers, generators or {})
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:  # what torch says of a misfit
        raise InrkitError(f"{path} does not fit this run ({str(err).splitlines()[0][:100]}); it is damaged or from "
                          "another version: move the run folder away to start afresh.") from None
    print0(f"resuming {path.parent} from step {pos['step']} ({pos['images'] / 1000:.3f} kimg)")
    return dict(pos)


def _restore(state: artifacts.Artifact, modules: dict, optimizers: dict, schedulers: dict, generators: dict) -> None:
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in state.tensors.items() if k.startswith(prefix)})
    for name, opt in optimizers.items():
        opt.load_state_dict(dict(state=_optimizer_state(state.tensors, name),
                                 param_groups=state.options["param_groups"][name]))
        _check_moments(opt)
    for name, sched in schedulers.items():
        sched.load_state_dict(state.options["schedulers"][name])
    torch.set_rng_state(state.tensors["rng.cpu"])
    if "rng.cuda" in state.tensors and torch.cuda.is_available():  # a CPU run's state has none; a CPU resume skips it
        torch.cuda.set_rng_state(state.tensors["rng.cuda"], device=torch.cuda.current_device())
    for name, gen in generators.items():
        gen.set_state(state.tensors[f"rng.{name}"])


def _check_moments(opt: torch.optim.Optimizer) -> None:
    """Optimizer state loads without a look at its shapes; a misfit would fail at the next step, mid-run."""
    for p, s in opt.state.items():
        for key, value in s.items():
            if torch.is_tensor(value) and value.dim() and value.shape != p.shape:
                raise ValueError(f"optimizer state {key} of shape {tuple(value.shape)} for a parameter of shape "
                                 f"{tuple(p.shape)}")
