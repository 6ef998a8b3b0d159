"""What `--precision` and `--compile` mean, in one place: every trainer, `render`, `fid` and `encode` use this.

Precisions (resolved per device by `resolve_precision`):
  fp32  float32 everywhere; on CUDA TF32 is switched off, so fp32 means IEEE float32 matmuls and convolutions.
  tf32  float32 tensors; CUDA matmuls and convolutions run on TF32 tensor cores (on a CPU: the same as fp32).
  bf16  forward passes under torch.autocast(bfloat16), TF32 for what autocast leaves in float32 (CUDA).
        Parameters, gradients and optimizer states stay float32 (the master weights: autocast casts copies for
        each op), and the objectives reduce their losses in float32. There is no gradient scaler: bfloat16 has
        float32's exponent range, so small gradients do not underflow as float16's would.
  auto  bf16 on CUDA, fp32 on a CPU (CPU bf16 autocast computes correctly, and the tests use it, but it is
        rarely faster there, and fp32 keeps CPU runs bit-identical to earlier versions).
Channels-last memory format pays for convolutions on tensor cores, so `channels_last` is on for CUDA with bf16
or tf32 (the StyleGAN2 discriminator uses it).

`--compile` wraps a module or function in torch.compile (`compiled`, `compile_module`); `compile_support` says in
one sentence why this machine cannot, before anything is traced. torch.compile cannot differentiate a compiled
graph twice, so callers keep R1's and the second-order inner loop's forwards uncompiled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from inrkit.core.checks import require_choice
from inrkit.core.errors import InrkitError

PRECISIONS = ("auto", "fp32", "bf16", "tf32")
PRECISION_HELP = "auto (bf16 + TF32 on CUDA, fp32 on CPU) | fp32 | bf16 | tf32"
COMPILE_HELP = "torch.compile the model's forward (the first steps compile: seconds to minutes)."
CXX_COMPILERS = ("c++", "g++", "clang++")  # what inductor's CPU backend can build its kernels with


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` is fp32, tf32 or bf16; `device` the device type (cpu, cuda)."""

    name: str = "fp32"
    device: str = "cpu"

    @property
    def autocasting(self) -> bool:
        return self.name == "bf16"

    @property
    def dtype(self) -> torch.dtype:
        """The dtype forward passes compute in (matmuls and convolutions; autocast keeps some ops float32)."""
        return torch.bfloat16 if self.autocasting else torch.float32

    @property
    def channels_last(self) -> bool:
        return self.device == "cuda" and self.name != "fp32"

    def autocast(self):
        """The context for forward passes (and losses computed from them): bf16 autocast, else nothing at all,
        so fp32 runs execute exactly the ops they did before precision existed."""
        if not self.autocasting:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=torch.bfloat16)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in the memory format the convolutions want (channels-last on CUDA tensor cores)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def convolutions(self, module: torch.nn.Module) -> torch.nn.Module:
        """A convolutional module with its 4-D weights channels-last where that pays; the same module."""
        return module.to(memory_format=torch.channels_last) if self.channels_last else module


FP32 = Precision()  # the default of every objective and renderer


def resolve_precision(name: str, device: torch.device | str) -> Precision:
    """`--precision` for a device: auto is bf16 on CUDA and fp32 on a CPU. On CUDA this also sets the
    process's TF32 switches (on for tf32 and bf16, off for fp32), which torch reads at every matmul."""
    require_choice("precision", name, PRECISIONS)
    kind = torch.device(device).type
    if name == "auto":
        name = "bf16" if kind == "cuda" else "fp32"
    if kind == "cuda":
        set_tf32(name != "fp32")
    return Precision(name, kind)


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA float32 matmuls and convolutions, through one of torch's two APIs: torch refuses to read
    the switches once both have been used, so the newer one is used where it exists."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(getattr(cudnn, "conv", None), "fp32_precision"):
        mode = "tf32" if enabled else "ieee"
        matmul.fp32_precision = mode
        cudnn.conv.fp32_precision = mode
    else:
        matmul.allow_tf32 = enabled
        cudnn.allow_tf32 = enabled


def autocast_inputs(*tensors: torch.Tensor | None) -> tuple:
    """Cast floating tensors to the autocast dtype when autocast is on for their device, as autocast casts a
    matmul's operands; unchanged otherwise. For hand-written autograd kernels, which autocast does not see."""
    first = next(t for t in tensors if t is not None)
    kind = first.device.type
    if not torch.is_autocast_enabled(kind):
        return tensors
    dtype = torch.get_autocast_dtype(kind)
    return tuple(t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors)


def compile_support(device: torch.device | str) -> str | None:
    """Why torch.compile cannot run for this device here (a clause for a message), or None if it can."""
    kind = torch.device(device).type
    dynamo = getattr(torch, "_dynamo", None)
    if dynamo is not None and hasattr(dynamo, "is_dynamo_supported") and not dynamo.is_dynamo_supported():
        return f"torch {torch.__version__} cannot compile on this Python or platform"
    if kind == "cpu":
        compilers = [os.environ["CXX"]] if os.environ.get("CXX") else list(CXX_COMPILERS)
        if not any(shutil.which(c) for c in compilers):
            return "torch.compile on a CPU builds C++ kernels and no C++ compiler (g++ or clang++) is on PATH"
    elif kind == "cuda" and importlib.util.find_spec("triton") is None:
        return "torch.compile on CUDA needs triton, which is not installed"
    return None


def check_compile(device: torch.device | str) -> None:
    reason = compile_support(device)
    if reason is not None:
        raise InrkitError(f"--compile cannot be used here: {reason}; run without --compile.")


def compiled(fn: Callable, device: torch.device | str, enabled: bool = True) -> Callable:
    """torch.compile(fn) (a module or a function; a module's parameters stay shared, its state_dict keys
    unchanged), or fn itself when not enabled."""
    if not enabled:
        return fn
    check_compile(device)
    return torch.compile(fn)


def compile_module(module: torch.nn.Module, device: torch.device | str, enabled: bool = True) -> torch.nn.Module:
    """Compile a module in place (module(...) then runs compiled; its methods called directly do not); the
    same module back."""
    if enabled:
        check_compile(device)
        module.compile()
    return module
