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
Nothing is ever unpickled: tensors are safetensors, everything else is JSON. Reading validates the whole header
(framing, JSON, every tensor entry, the metadata values) before any tensor byte is read, so a damaged or foreign
file is one InrkitError sentence, never another exception; each family checks its config before it builds.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import itertools
import json
import math
import os
import re
import signal
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
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
    """Temporary file in the same folder, flush, fsync, rename: a killed run never leaves half a file, and a write
    that fails (disk full, no permission) leaves the previous file as it was and says so in one sentence. The
    temporary's name holds the writer's pid, so one left by a killed writer is removed by the next write."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        _write_and_rename(path, data)
    except OSError as err:
        raise InrkitError(f"could not write {path} ({err.strerror or err}); {_what_is_left(path)}.") from None


def _what_is_left(path: Path) -> str:
    try:
        return "the previous file is left as it was" if path.is_file() else "nothing was written"
    except OSError:
        return "nothing was written"


def _write_and_rename(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            _fault_kill(f, data)
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


def _remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` whose writer is gone (a SIGKILL or a power cut stops the cleanup in the writer)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


KILL_WRITE = "INRKIT_FAULT_KILL_WRITE"  # test hook: the N-th atomic write of this process dies half-way
_writes = itertools.count(1)


def _fault_kill(f, data: bytes) -> None:
    """INRKIT_FAULT_KILL_WRITE=N (the kill tests, tests/killharness.py): the N-th atomic write of this process
    writes half its bytes, then the process SIGKILLs itself, as kill -9 in the middle of a snapshot would."""
    target = os.environ.get(KILL_WRITE)
    if target and next(_writes) == int(target):
        f.write(data[: len(data) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)


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


# Bytes per element of the safetensors dtypes torch reads (sub-byte dtypes are not ours).
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E4M3FNUZ": 1, "F8_E5M2": 1, "F8_E5M2FNUZ": 1,
               "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8,
               "F64": 8, "C64": 8}
_MAX_DIMS = 16  # more dimensions than any tensor of ours has
JSON_KEYS = ("config", "options", "parents", "metrics")  # metadata values that are JSON objects


def _unique_keys(pairs: list) -> dict:
    """json.loads hook: a duplicated key is damage (safetensors and Python would each keep a different one)."""
    table = dict(pairs)
    if len(table) != len(pairs):
        raise ValueError("a duplicate key")
    return table


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python reads them, safetensors does not


def _parse_header(path: Path, raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InrkitError(f"{path} is not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise InrkitError(f"{path} is not a safetensors file (its header is not a JSON object).")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise InrkitError(f"{path} is damaged: its metadata is not a table of strings.")
    return header


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _entry_error(entry) -> str | None:
    """What is wrong with one tensor entry of the header, or None."""
    if not isinstance(entry, dict):
        return "an entry that is not a JSON object"
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in entry]
    if missing:
        return f"no {missing[0]}"
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        return f"an unknown dtype {str(dtype)[:20]!r}"
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
        return "a shape that is not a list of sizes"
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]):
        return "data_offsets that are not two increasing byte positions"
    if math.prod(shape) * DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
        return f"a shape {shape} whose {math.prod(shape)} elements do not fill its {offsets[1] - offsets[0]} bytes"
    return None


def _check_index(path: Path, index: dict, data_bytes: int) -> None:
    """Every entry well formed, and the tensors tiling the data section exactly: in order, no gap, no overlap."""
    for name, entry in index.items():
        problem = _entry_error(entry)
        if problem:
            raise InrkitError(f"{path} is damaged: tensor {name[:60]!r} has {problem}.")
    end = 0
    for name, entry in sorted(index.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, stop = entry["data_offsets"]
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else "leaves a gap before it"
            raise InrkitError(f"{path} is damaged: tensor {name[:60]!r} {what}.")
        end = stop
    if end > data_bytes:
        raise InrkitError(f"{path} is truncated ({data_bytes} bytes of tensor data, {end} expected).")
    if end < data_bytes:
        raise InrkitError(f"{path} is damaged: it has {data_bytes - end} bytes after its last tensor.")


def read_header(path: str | Path) -> tuple[dict, dict]:
    """(metadata, tensor index) from the header alone, validated in full so that reading the tensors cannot fail
    and each kind of damage gets its own sentence: the safetensors framing, the header JSON, every tensor entry
    (dtype, shape, data_offsets; the tensors tile the data section exactly) and the kind. The index maps each
    tensor name to its {dtype, shape, data_offsets}."""
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
    header = _parse_header(path, raw)
    meta = header.pop("__metadata__", {})
    _check_index(path, header, size - 8 - n)
    if "kind" not in meta:
        raise InrkitError(f"{path} is a safetensors file but not an inrkit artifact (no 'kind' in its metadata).")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", meta["kind"]):
        raise InrkitError(f"{path} is damaged: its kind is not a name.")
    return meta, header


def format_version(path: str | Path, meta: dict) -> int:
    """The metadata's format version, an integer (0 when a very early file has none)."""
    text = meta.get("format_version", "0")
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise InrkitError(f"{path} has a format_version that is not an integer; the file is damaged.")
    return int(text)


def metadata_json(path: str | Path, meta: dict, key: str) -> dict:
    """One of the JSON_KEYS metadata values, parsed; it must be a JSON object ({} when absent)."""
    try:
        value = json.loads(meta.get(key, "{}"))
    except (ValueError, RecursionError):
        raise InrkitError(f"{path} has {key} metadata that is not JSON; the file is damaged.") from None
    if not isinstance(value, dict):
        raise InrkitError(f"{path} has {key} metadata that is not a JSON object; the file is damaged.")
    return value


def _read_metadata(path: Path) -> dict:
    return read_header(path)[0]


def kind_of(path: str | Path) -> str:
    """The artifact's kind, read from its header alone (cheap even for a large generator)."""
    return _read_metadata(Path(path))["kind"]


def read(path: str | Path, kind: str | None = None) -> Artifact:
    """Read an artifact, checking framing, kind, format version and metadata before any tensor byte is read;
    never unpickles anything."""
    path = Path(path)
    meta = _read_metadata(path)
    if kind is not None and meta["kind"] != kind:
        raise InrkitError(f"{path} is a {meta['kind']} artifact, but a {kind} artifact is needed here.")
    version = format_version(path, meta)
    if version > FORMAT_VERSION:
        raise InrkitError(
            f"{path} was written by a newer inrkit (format {version}, this is {FORMAT_VERSION}); upgrade inrkit."
        )
    values = {key: metadata_json(path, meta, key) for key in JSON_KEYS}
    return Artifact(kind=meta["kind"], tensors=_tensors(path), command=meta.get("command", ""),
                    inrkit_version=meta.get("inrkit_version", ""), format_version=version, **values)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a file whose header read_header validated. The file may still change under us (another
    process rewriting it), which safetensors then reports: as damage, in one sentence."""
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise InrkitError(f"{path} could not be read ({str(err).splitlines()[0][:80]}); the file is damaged "
                          "or changed while it was read.") from None


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

