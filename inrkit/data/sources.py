"""Image sources on disk: a folder, a zip, webdataset tar shards. All map-style and scanned once.

Opening a source lists its items in a fixed order (sorted paths; shards in order, members in
tar order) and checks each file's first and last bytes (image.check_bytes), so empty, truncated
and non-image files are skipped and counted before any sampling, and `len` is exact. Shards are
indexed by their tar headers (name, data offset, size) and read by seek, so they are random
access like the rest and one sampler serves every source.

Per-item tables are numpy arrays, not Python lists: DataLoader workers share them after fork
without copy-on-read growth (a list of a million str objects gets copied page by page).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
from braceexpand import braceexpand

from inrkit.core.errors import InrkitError
from inrkit.data.image import HEAD_BYTES, IMAGE_EXTS, TAIL_BYTES, check_bytes, signature

SHARD_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTS)
DATASET_JSON = "dataset.json"  # written by `inrkit data pack` beside the shards: class names and counts


class Scan:
    """What a scan found: usable items (key, signature, source reference) and skip reasons."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.sigs: list[int] = []
        self.refs: list[tuple[int, ...]] = []
        self.labels: list[int] = []
        self.skipped: Counter[str] = Counter()

    def add(self, key: str, size: int, head: bytes, tail: bytes, ref: tuple[int, ...], label: int = -1) -> None:
        reason = check_bytes(head, tail, size)
        if reason:
            self.skipped[reason] += 1
            return
        self.keys.append(key)
        self.sigs.append(signature(key, size, head, tail))
        self.refs.append(ref)
        self.labels.append(label)


def _is_hidden(key: str) -> bool:
    """Dot files (.DS_Store, .ipynb_checkpoints/) and macOS zip resource forks are not data."""
    return any(part.startswith(".") or part == "__MACOSX" for part in key.split("/"))


def _head_tail(file, offset: int, size: int) -> tuple[bytes, bytes]:
    file.seek(offset)
    head = file.read(min(HEAD_BYTES, size))
    file.seek(offset + max(0, size - TAIL_BYTES))
    return head, file.read(min(TAIL_BYTES, size))


class ScannedSource:
    """Shared tables and accessors of folder, zip and shard sources."""

    kind = ""
    location = ""

    def _finish(self, scan: Scan, classes: list[str]) -> None:
        self._keys = np.array([k.encode() for k in scan.keys], dtype=np.bytes_)
        self._sigs = np.array(scan.sigs, dtype=np.uint64)
        refs = np.array(scan.refs, dtype=np.int64)
        self._refs = refs if refs.ndim == 2 else refs.reshape(len(scan.keys), 0)  # (n, fields per ref)
        self.targets = np.array(scan.labels, dtype=np.int64)
        self.classes = classes
        self.skipped = +scan.skipped  # drops zero counts

    def __len__(self) -> int:
        return len(self._keys)

    def key(self, i: int) -> str:
        return self._keys[i].decode()

    def label(self, i: int) -> int:
        return int(self.targets[i])

    def content_id(self, n: int) -> str:
        """Digest of the first n items: names, sizes, first and last bytes, labels and class names."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self._sigs[:n].tobytes() + self.targets[:n].tobytes() + json.dumps(self.classes).encode())
        return h.hexdigest()


def _folder_labels(scan: Scan, wanted: bool, where: str) -> list[str]:
    """Class = first sub-folder under the root; fills scan.labels and returns the sorted class names."""
    if not wanted:
        return []
    loose = [k for k in scan.keys if "/" not in k]
    if loose:
        raise InrkitError(f"labels were asked for but {where} has images outside class sub-folders, e.g. {loose[0]}.")
    classes = sorted({k.split("/", 1)[0] for k in scan.keys})
    lookup = {name: i for i, name in enumerate(classes)}
    scan.labels = [lookup[k.split("/", 1)[0]] for k in scan.keys]
    return classes


class FolderSource(ScannedSource):
    """A folder of images, searched recursively, in sorted path order."""

    kind = "folder"

    def __init__(self, root: Path, labels: bool) -> None:
        self.root, self.location = root, str(root)
        scan = Scan()
        files = [p for p in root.rglob("*") if p.is_file()]
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
            key = path.relative_to(root).as_posix()
            if _is_hidden(key):
                scan.skipped["hidden file"] += 1
            elif path.suffix.lower() not in IMAGE_EXTS:
                scan.skipped["unsupported file type"] += 1
            else:
                size = path.stat().st_size
                with open(path, "rb") as f:
                    scan.add(key, size, *_head_tail(f, 0, size), ref=())
        self._finish(scan, _folder_labels(scan, labels, str(root)))

    def read(self, i: int) -> bytes:
        return (self.root / self.key(i)).read_bytes()


def _zip_data_offset(raw, info: zipfile.ZipInfo) -> int:
    """Where a member's bytes start: after its local header, whose name/extra lengths can differ
    from the central directory's, so they are read from the local header itself."""
    raw.seek(info.header_offset)
    header = raw.read(30)
    if header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _common_root(names: list[str]) -> str:
    """A zip whose members all sit in one top-level folder reads like that folder."""
    tops = {n.split("/", 1)[0] if "/" in n else None for n in names}
    return f"{tops.pop()}/" if len(tops) == 1 and None not in tops else ""


class ZipSource(ScannedSource):
    """A zip of images. Stored members (the usual case: images are already compressed) are read
    by seek; compressed members are decompressed when checked and when read."""

    kind = "zip"

    def __init__(self, path: Path, labels: bool) -> None:
        self.path, self.location = path, str(path)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = 0
        try:
            with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
                scan = self._scan(zf, raw)
        except (zipfile.BadZipFile, OSError):
            raise InrkitError(f"{path} is not a readable zip file.") from None
        self._finish(scan, _folder_labels(scan, labels, str(path)))

    def _scan(self, zf: zipfile.ZipFile, raw) -> Scan:
        scan = Scan()
        infos = sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: i.filename)
        scan.skipped["hidden file"] += sum(_is_hidden(i.filename) for i in infos)
        infos = [i for i in infos if not _is_hidden(i.filename)]
        self.prefix = _common_root([i.filename for i in infos])
        for info in infos:
            key = info.filename[len(self.prefix) :]
            if Path(key).suffix.lower() not in IMAGE_EXTS:
                scan.skipped["unsupported file type"] += 1
            elif info.compress_type == zipfile.ZIP_STORED:
                offset = _zip_data_offset(raw, info)
                scan.add(key, info.file_size, *_head_tail(raw, offset, info.file_size), ref=(offset, info.file_size))
            else:
                try:
                    data = zf.read(info)
                except (zipfile.BadZipFile, OSError, EOFError):
                    scan.skipped["corrupt zip member"] += 1
                    continue
                scan.add(key, len(data), data[:HEAD_BYTES], data[-TAIL_BYTES:], ref=(-1, len(data)))
        return scan

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}  # open zip handles do not cross process boundaries

    def read(self, i: int) -> bytes:
        offset, size = (int(v) for v in self._refs[i])
        if offset >= 0:
            with open(self.path, "rb") as f:
                f.seek(offset)
                return f.read(size)
        # A forked worker must not share the parent's file offset: one ZipFile per process.
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip.read(self.prefix + self.key(i))


def _split_member(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the file name; the rest is the field."""
    directory, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


def _tar_members(path: Path, skipped: Counter) -> list[tarfile.TarInfo]:
    """Headers of a tar shard (data is seeked over, not read). tarfile stops quietly at a cut header,
    so a shard missing its end-of-archive blocks is counted as truncated; its complete members stay."""
    members: list[tarfile.TarInfo] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                members.append(member)
            end = tar.offset  # where the end-of-archive blocks (1024 zero bytes) should start
    except (tarfile.TarError, EOFError, OSError):
        skipped["truncated shard" if members else "unreadable shard"] += 1
        end = None
    size = path.stat().st_size
    if end is not None and size < end + 2 * tarfile.BLOCKSIZE:
        skipped["truncated shard"] += 1
    return [m for m in members if m.isfile() and m.offset_data + m.size <= size]


def _read_label(f, member: tarfile.TarInfo) -> int:
    """The integer in a `.cls` member; -1 (no label) when it holds anything else."""
    f.seek(member.offset_data)
    try:
        return max(int(f.read(member.size).decode().strip()), -1)
    except (UnicodeDecodeError, ValueError):
        return -1


class ShardSource(ScannedSource):
    """webdataset tar shards: samples `{key}.png|jpg|jpeg|webp|bmp`, optional `{key}.cls` integer label."""

    kind = "shards"

    def __init__(self, shards: list[Path], labels: bool, location: str) -> None:
        self.shards, self.location = [str(s) for s in shards], location
        scan = Scan()
        for s, path in enumerate(shards):
            self._scan_shard(s, path, labels, scan)
        if labels and not scan.keys and scan.skipped["sample without a label"]:
            raise InrkitError(f"labels were asked for but the shards {location} carry no .cls labels.")
        self._finish(scan, _shard_classes(shards[0].parent, scan.labels) if labels else [])

    def _scan_shard(self, s: int, path: Path, labels: bool, scan: Scan) -> None:
        samples: dict[str, dict[str, tarfile.TarInfo]] = {}
        for member in _tar_members(path, scan.skipped):
            key, ext = _split_member(member.name)
            samples.setdefault(key, {})[ext] = member
        with open(path, "rb") as f:
            for key, fields in samples.items():
                image = next((fields[e] for e in SHARD_IMAGE_EXTS if e in fields), None)
                label = _read_label(f, fields["cls"]) if labels and "cls" in fields else -1
                if image is None:
                    scan.skipped["sample without an image"] += 1
                elif labels and label < 0:
                    scan.skipped["sample without a label"] += 1
                else:
                    head, tail = _head_tail(f, image.offset_data, image.size)
                    scan.add(key, image.size, head, tail, ref=(s, image.offset_data, image.size), label=label)

    def read(self, i: int) -> bytes:
        shard, offset, size = (int(v) for v in self._refs[i])
        with open(self.shards[shard], "rb") as f:
            f.seek(offset)
            return f.read(size)


def _shard_classes(folder: Path, labels: list[int]) -> list[str]:
    """Class names from the dataset.json that `inrkit data pack` writes; else the label numbers."""
    count = max(labels, default=-1) + 1
    meta = folder / DATASET_JSON
    if meta.is_file():
        try:
            classes = json.loads(meta.read_text()).get("classes") or []
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            classes = []
        if len(classes) >= count and all(isinstance(c, str) for c in classes):
            return list(classes)
    return [str(i) for i in range(count)]


def expand_shards(pattern: str) -> list[Path]:
    """`dir/train-{000000..000127}.tar` -> the shard paths; every one of them must exist."""
    paths = [Path(p).expanduser() for p in braceexpand(pattern)]
    missing = [p for p in paths if not p.is_file()]
    if len(missing) == len(paths):
        raise InrkitError(f"the shard pattern {pattern} matches no files.")
    if missing:
        raise InrkitError(f"{len(missing)} of the {len(paths)} shards in {pattern} are missing, e.g. {missing[0]}.")
    return paths


def _folder_shards(root: Path) -> list[Path]:
    """The .tar files directly in a folder; a folder holding shards and loose images is ambiguous."""
    shards = sorted(p for p in root.glob("*.tar") if p.is_file())
    if shards and any(p.suffix.lower() in IMAGE_EXTS for p in root.iterdir()):
        raise InrkitError(f"{root} holds both .tar shards and images; point to one of them.")
    return shards


def open_source(spec: str, labels: bool) -> ScannedSource:
    """A folder (of images or of .tar shards), a .zip, a .tar, or a brace pattern of .tar shards."""
    if "{" in spec and re.search(r"\{[^}]*(\.\.|,)[^}]*\}", spec):
        return ShardSource(expand_shards(spec), labels, spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise InrkitError(f"dataset {spec} does not exist; pass a folder, a .zip, .tar shards or builtin:NAME.")
    if path.is_dir():
        shards = _folder_shards(path)
        return ShardSource(shards, labels, spec) if shards else FolderSource(path, labels)
    if path.suffix.lower() == ".zip":
        return ZipSource(path, labels)
    if path.suffix.lower() == ".tar":
        return ShardSource([path], labels, spec)
    raise InrkitError(f"dataset {spec} is not a folder, a .zip or a .tar file.")
