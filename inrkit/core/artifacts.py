"""The only reader and writer of artifacts: one safetensors file each, JSON metadata, atomic writes.

Metadata keys (all strings, as safetensors requires):
  kind            what it holds: a constant of the family that owns the kind (inrkit.models.registry
                  rebuilds each kind; e.g. field, generator, functa-model, functaset, latents)
  format_version  integer; a file newer than this inrkit refuses to load
  config          JSON: the full model config, enough to rebuild the model with no flags
  command         the producing command line
  options         JSON: the resolved stage options
  parents         JSON: {path: sha256} of the artifacts it was made from
  inrkit_version  the version that wrote it
  metrics         JSON: summary metrics (e.g. psnr)
Nothing is ever unpickled: tensors are safetensors, everything else is JSON.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from inrkit.core.errors import InrkitError

FORMAT_VERSION = 1
_MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not one of ours


def _installed_version() -> str:
    """inrkit's version as installed (pyproject.toml), read here because core imports no upper layer."""
    try:
        return importlib.metadata.version("inrkit")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


INRKIT_VERSION = _installed_version()


@dataclass
class Artifact:
    kind: str
    tensors: dict[str, torch.Tensor]
    config: dict
    command: str = ""
    options: dict = field(default_factory=dict)
    parents: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    inrkit_version: str = INRKIT_VERSION
    format_version: int = FORMAT_VERSION


def command_line() -> str:
    return " ".join(["inrkit"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("inrkit") else " ".join(sys.argv)


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Temporary file in the same folder, flush, fsync, rename: a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(path: str | Path, art: Artifact) -> Path:
    """Write `art` atomically to `path` (a .safetensors file)."""
    meta = {
        "kind": art.kind,
        "format_version": str(art.format_version),
        "config": json.dumps(art.config),
        "command": art.command or command_line(),
        "options": json.dumps(art.options, default=str),
        "parents": json.dumps(art.parents),
        "inrkit_version": art.inrkit_version,
        "metrics": json.dumps(art.metrics),
    }
    # safetensors wants contiguous tensors that share no storage.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in art.tensors.items()}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))
    return Path(path)


def read_header(path: str | Path) -> tuple[dict, dict]:
    """(metadata, tensor index) from the header alone, validating the safetensors framing by hand so each
    failure gets its own sentence, and checking the file is long enough for the tensors the header promises.
    The index maps each tensor name to its {dtype, shape, data_offsets}."""
    path = Path(path)
    if not path.is_file():
        raise InrkitError(f"{path} does not exist." if not path.exists() else f"{path} is not a file.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(9)
        if len(prefix) < 9:
            raise InrkitError(f"{path} is not a safetensors file (it is only {size} bytes).")
        (n,) = struct.unpack("<Q", prefix[:8])
        if n > _MAX_HEADER or prefix[8:9] != b"{":
            raise InrkitError(f"{path} is not a safetensors file.")
        if 8 + n > size:
            raise InrkitError(f"{path} is truncated (its header runs past the end of the file).")
        raw = prefix[8:] + f.read(n - 1)
    try:
        header = json.loads(raw)
    except ValueError:
        raise InrkitError(f"{path} is not a safetensors file (its header is not JSON).") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise InrkitError(f"{path} is truncated ({size} bytes, {8 + n + end} expected).")
    meta = header.get("__metadata__") or {}
    if "kind" not in meta:
        raise InrkitError(f"{path} is a safetensors file but not an inrkit artifact (no 'kind' in its metadata).")
    return meta, {k: v for k, v in header.items() if k != "__metadata__"}


def _read_metadata(path: Path) -> dict:
    return read_header(path)[0]


def kind_of(path: str | Path) -> str:
    """The artifact's kind, read from its header alone (cheap even for a large generator)."""
    return _read_metadata(Path(path))["kind"]


def read(path: str | Path, kind: str | None = None) -> Artifact:
    """Read an artifact, checking framing, kind and format version; never unpickles anything."""
    path = Path(path)
    meta = _read_metadata(path)
    if kind is not None and meta["kind"] != kind:
        raise InrkitError(f"{path} is a {meta['kind']} artifact, but a {kind} artifact is needed here.")
    version = int(meta.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise InrkitError(
            f"{path} was written by a newer inrkit (format {version}, this is {FORMAT_VERSION}); upgrade inrkit."
        )
    return Artifact(
        kind=meta["kind"],
        tensors=st_load(path.read_bytes()),
        config=json.loads(meta.get("config", "{}")),
        command=meta.get("command", ""),
        options=json.loads(meta.get("options", "{}")),
        parents=json.loads(meta.get("parents", "{}")),
        metrics=json.loads(meta.get("metrics", "{}")),
        inrkit_version=meta.get("inrkit_version", ""),
        format_version=version,
    )


def load_state(module: torch.nn.Module, art: Artifact, path: str | Path) -> torch.nn.Module:
    """Load `art.tensors` into `module`, naming what is missing or unexpected in one sentence."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(art.tensors))
    extra = sorted(set(art.tensors) - set(expected))
    if missing or extra:
        what = f"missing tensors {missing[:3]}" if missing else f"unexpected tensors {extra[:3]}"
        raise InrkitError(f"{path} does not match its own config ({what}); the file is damaged or foreign.")
    bad = [k for k, v in expected.items() if v.shape != art.tensors[k].shape]
    if bad:
        raise InrkitError(f"{path} has tensor {bad[0]} of the wrong shape for its config; the file is damaged.")
    module.load_state_dict(art.tensors)
    return module

