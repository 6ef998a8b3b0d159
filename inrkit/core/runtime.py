"""Device choice, seeding, torch.distributed initialisation and rank-0 printing."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from rich.console import Console

from inrkit.core.errors import InrkitError

console = Console(stderr=True, highlight=False)


def pick_device(name: str = "auto") -> torch.device:
    """`auto` is cuda when available, else cpu; an unavailable `cuda` is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InrkitError(f"--device {name} was asked for but this machine has no CUDA GPU; use --device cpu.")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise InrkitError(f"unknown --device {name!r}; use auto, cpu or cuda.")
    return torch.device(name)


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on `device`. To CUDA through pinned memory and a non-blocking copy: a copy from pageable
    memory may make the host wait for the GPU's queue, a per-step sync in a training loop."""
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def seed_all(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch.Generator for explicit sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    if torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def is_rank0() -> bool:
    return rank() == 0


def init_distributed(device: torch.device) -> None:
    """Join the torchrun process group when launched by torchrun (nccl on GPU, gloo on CPU); else no-op."""
    if world_size() > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def print0(*args, **kwargs) -> None:
    """Print on rank 0 only (to stderr, through rich, so stdout stays clean for results)."""
    if is_rank0():
        console.print(*args, **kwargs)


def average_gradients(model: torch.nn.Module) -> None:
    """Average gradients over ranks with one all_reduce of a flat buffer (no-op on one process).

    Used instead of DDP by stages whose backward passes DDP's hooks handle badly (second-order inner
    loops, R1's double backward, switching D's gradients on and off)."""
    if world_size() == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])
    torch.distributed.all_reduce(flat)
    flat /= world_size()
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad.copy_(g.view_as(p))


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Start every rank from rank 0's parameters."""
    if world_size() > 1:
        for p in model.parameters():
            torch.distributed.broadcast(p.data, 0)


def refuse_changed_options(run_dir, before: dict, now: dict, keys) -> None:
    """Resuming a run folder with different training options would silently mix two runs: refuse it."""
    changed = [k for k in keys if before.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise InrkitError(f"{run_dir} was trained with --{k.replace('_', '-')} {before.get(k)!r}, not "
                          f"{now[k]!r}; rerun with the same options to resume, or choose another --out.")


def parameter_fingerprint(model: torch.nn.Module) -> torch.Tensor:
    """Two float64 sums per parameter: equal on every rank exactly when the ranks are in sync (in practice)."""
    sums = [torch.stack([p.double().sum(), (p.double() ** 2).sum()]) for p in model.parameters()]
    return torch.cat(sums).detach()


def parameters_sha256(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal across ranks (and runs) exactly when the models are."""
    import hashlib

    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_in_sync(model: torch.nn.Module) -> None:
    """Fail loudly if the ranks' parameters differ (a bug in the distributed setup, never the user's)."""
    if world_size() == 1:
        return
    mine = parameter_fingerprint(model)
    every = [torch.empty_like(mine) for _ in range(world_size())]
    torch.distributed.all_gather(every, mine)
    if any(not torch.equal(mine, other) for other in every):
        raise InrkitError("the ranks' parameters have diverged; this is a bug in the distributed setup.")


def rank0_decides(flag: bool, device) -> bool:
    """Rank 0's value of `flag` on every rank (e.g. 'out of time'), so all ranks take the same branch."""
    if world_size() == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    torch.distributed.broadcast(t, 0)
    return bool(t.item())


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """All-reduce a small tensor (on the backend's device: nccl reduces only CUDA tensors); returns it on CPU."""
    if world_size() == 1:
        return values.cpu()
    device = torch.device("cuda") if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    summed = values.to(device)
    torch.distributed.all_reduce(summed)
    return summed.cpu()


def average_buffer(buffer: torch.Tensor) -> None:
    """Average a buffer (e.g. the generator's running w_avg) over ranks in place."""
    if world_size() > 1:
        torch.distributed.all_reduce(buffer)
        buffer /= world_size()


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()
