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
from inrkit.core.runtime import print0, refuse_changed_options

KIND = "train-state"


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
    refuse_changed_options(path.parent, state.config.get("training", {}), training, list(training))
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in state.tensors.items() if k.startswith(prefix)})
    for name, opt in optimizers.items():
        opt.load_state_dict(dict(state=_optimizer_state(state.tensors, name),
                                 param_groups=state.options["param_groups"][name]))
    for name, sched in schedulers.items():
        sched.load_state_dict(state.options["schedulers"][name])
    torch.set_rng_state(state.tensors["rng.cpu"])
    if "rng.cuda" in state.tensors and torch.cuda.is_available():  # a CPU run's state has none; a CPU resume skips it
        torch.cuda.set_rng_state(state.tensors["rng.cuda"], device=torch.cuda.current_device())
    for name, gen in (generators or {}).items():
        gen.set_state(state.tensors[f"rng.{name}"])
    pos = dict(state.metrics)
    print0(f"resuming {path.parent} from step {pos['step']} ({pos['images'] / 1000:.3f} kimg)")
    return pos
