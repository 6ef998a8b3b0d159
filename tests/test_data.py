"""Data layer: every source kind, conversion, bad data, fingerprints, packing and error messages.

Fixtures are built here under tmp_path: a folder with class sub-folders (PNG, JPEG, WebP, grey,
RGBA, non-square), the same folder as a zip, shards packed from it, and the four kinds of bad data
(truncated JPEG, zero-byte file, text named .png, non-image member inside a shard).
"""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inrkit.core.errors import InrkitError
from inrkit.data import make_loader, open_dataset, pack_dataset
from inrkit.data.image import check_bytes

R = 16  # test resolution
GOOD_PER_CLASS = 5
FOLDER_SKIPS = {"truncated image": 1, "empty file": 1, "not an image": 1, "unsupported file type": 1}


def _picture(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A smooth gradient plus noise, so that crops, flips and resizes all change the pixels."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    array = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    if mode == "RGBA":
        alpha = Image.fromarray((np.arange(w)[None].repeat(h, 0) * 255 // w).astype(np.uint8))
        image.putalpha(alpha)
    return image.convert(mode)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_image_folder(root: Path) -> Path:
    """cats/ and dogs/ with 5 good images each (assorted formats, sizes and modes) plus 4 bad files."""
    specs = [("png", (40, 30), "RGB"), ("jpeg", (24, 24), "RGB"), ("webp", (30, 50), "RGB"),
             ("png", (33, 33), "L"), ("png", (20, 28), "RGBA")]
    for c, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i, (fmt, size, mode) in enumerate(specs):
            ext = {"jpeg": "jpg"}.get(fmt, fmt)
            (root / name / f"{i:02d}.{ext}").write_bytes(_encoded(_picture(10 * c + i, size, mode), fmt))
    jpeg = _encoded(_picture(99, (64, 64)), "jpeg")
    (root / "cats" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "dogs" / "empty.png").write_bytes(b"")
    (root / "dogs" / "fake.png").write_text("this is not a picture\n")
    (root / "notes.txt").write_text("the README of a dataset\n")
    return root


def write_zip(folder: Path, path: Path) -> Path:
    """The folder zipped under one top-level directory; PNGs stored, everything else deflated."""
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                kind = zipfile.ZIP_STORED if file.suffix == ".png" else zipfile.ZIP_DEFLATED
                zf.write(file, f"{folder.name}/{file.relative_to(folder).as_posix()}", compress_type=kind)
    return path


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    folder = write_image_folder(base / "images")
    shards = base / "shards"
    pack_dataset(str(folder), shards, R, labels=True, shard_size=4, workers=0, progress=False)
    return {"folder": folder, "zip": write_zip(folder, base / "images.zip"), "shards": shards, "base": base}


def _all(ds) -> tuple[torch.Tensor, list[int]]:
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([x for x, _ in items]), [y for _, y in items]


def assert_one_sentence(err: pytest.ExceptionInfo) -> None:
    text = str(err.value)
    assert "\n" not in text and text.endswith(".") and len(text) < 300, text


# ----------------------------------------------------------------------------- sources


def test_folder_reads_classes_and_converts(data):
    ds = open_dataset(str(data["folder"]), R, labels=True)
    assert len(ds) == 2 * GOOD_PER_CLASS and ds.classes == ["cats", "dogs"]
    images, labels = _all(ds)
    assert images.shape == (10, 3, R, R) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and images.min() < -0.5 and images.max() > 0.5
    assert labels == [0] * 5 + [1] * 5
    assert ds.key(0) == "cats/00.png"
    grey = ds[3][0]  # the grey PNG becomes three equal channels
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_bad_files_are_skipped_and_counted(data):
    ds = open_dataset(str(data["folder"]), R)
    assert dict(ds.skipped) == FOLDER_SKIPS
    assert "skipped 4" in ds.describe() and "1 truncated image" in ds.describe()
    assert all(ds.label(i) == -1 for i in range(len(ds))) and ds.classes == []


def test_zip_and_packed_shards_match_the_folder(data):
    folder = open_dataset(str(data["folder"]), R, labels=True)
    zipped = open_dataset(str(data["zip"]), R, labels=True)
    shards = open_dataset(str(data["shards"]), R, labels=True)
    reference, labels = _all(folder)
    for other in (zipped, shards):
        images, other_labels = _all(other)
        assert torch.equal(images, reference) and other_labels == labels
        assert other.classes == folder.classes
    assert dict(zipped.skipped) == FOLDER_SKIPS
    assert len(list(data["shards"].glob("*.tar"))) == 3  # 10 images at 4 per shard


def test_single_tar_and_brace_pattern(data):
    first = data["shards"] / "train-000000.tar"
    assert len(open_dataset(str(first), R)) == 4
    pattern = str(data["shards"] / "train-{000000..000002}.tar")
    both = open_dataset(pattern, R)
    assert len(both) == 10 and both.source.kind == "shards"


def test_channels_and_centre_crop():
    image = Image.new("RGB", (30, 10), (255, 0, 0))
    image.paste((0, 0, 255), (10, 0, 20, 10))  # a blue centre square between red bands
    from inrkit.data.image import convert, to_tensor

    rgb = to_tensor(convert(image, 10, 3))
    assert torch.equal(rgb[:, 5, 5], torch.tensor([-1.0, -1.0, 1.0]))  # only the centre square is kept
    grey = to_tensor(convert(image, 5, 1))
    assert grey.shape == (1, 5, 5)


def test_check_bytes_sees_truncation_and_impostors():
    png = _encoded(_picture(0, (8, 8)), "png")
    assert check_bytes(png[:16], png[-4096:], len(png)) is None
    cut = png[:-20]
    assert check_bytes(cut[:16], cut[-4096:], len(cut)) == "truncated image"
    assert check_bytes(b"hello", b"hello", 5) == "not an image"
    assert check_bytes(b"", b"", 0) == "empty file"


def test_undecodable_image_resolves_to_the_next_one(tmp_path):
    """A file that passes the scan but fails to decode is counted and replaced, never raised."""
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(_encoded(_picture(i, (12, 12)), "png"))
    png = bytearray((folder / "1.png").read_bytes())
    start = png.index(b"IDAT") + 4
    png[start : start + 40] = bytes(40)  # zeroed compressed data: header and IEND still intact
    (folder / "1.png").write_bytes(bytes(png))
    ds = open_dataset(str(folder), 12)
    assert len(ds) == 3 and not ds.skipped  # the scan cannot tell
    assert torch.equal(ds[1][0], ds[2][0])
    assert ds.skipped == {"undecodable image": 1}


def test_file_vanishing_after_the_scan_resolves_to_the_next_one(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(_encoded(_picture(i, (12, 12)), "png"))
    ds = open_dataset(str(folder), 12)
    (folder / "2.png").unlink()
    assert torch.equal(ds[2][0], ds[0][0]) and ds.skipped == {"unreadable file": 1}


def test_zip_read_by_forked_workers(data, monkeypatch):
    """Compressed members go through a ZipFile; a process forked after the parent opened it must
    open its own (a shared file offset would mix up reads), and the batches are the same."""
    ds = open_dataset(str(data["zip"]), R)
    first = ds[1][0]  # a deflated JPEG: the parent process now holds an open ZipFile
    alone = next(make_loader(ds, 10, seed=0, workers=0))[0]
    shared = next(make_loader(ds, 10, seed=0, workers=2))[0]
    assert torch.equal(alone, shared) and any(torch.equal(first, x) for x in alone)
    parent_zip = ds.source._zip
    monkeypatch.setattr("os.getpid", lambda: -1)  # as seen from a forked child
    assert torch.equal(ds[1][0], first) and ds.source._zip is not parent_zip


def test_shard_with_bad_members_is_read_without_crashing(tmp_path):
    good = _encoded(_picture(0, (16, 16)), "png")
    jpeg = _encoded(_picture(1, (16, 16)), "jpeg")
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        add_member(tar, "a.png", good)
        add_member(tar, "a.cls", b"1")
        add_member(tar, "b.txt", b"a caption without an image")
        add_member(tar, "c.png", b"plain text, not a png")
        add_member(tar, "d.jpg", jpeg[:100])
        add_member(tar, "e.png", b"")
        add_member(tar, "f.png", good)
        add_member(tar, "f.json", b"{}")
    ds = open_dataset(str(tmp_path / "bad.tar"), 16)
    assert len(ds) == 2 and [ds.key(i) for i in range(2)] == ["a", "f"]
    assert dict(ds.skipped) == {"sample without an image": 1, "not an image": 1, "truncated image": 1,
                                "empty file": 1}
    summary = pack_dataset(str(tmp_path / "bad.tar"), tmp_path / "out", 8, workers=0, progress=False)
    assert summary.written == 2 and summary.skipped == ds.skipped


def test_truncated_shard_keeps_its_complete_samples(data, tmp_path):
    shard = data["shards"] / "train-000000.tar"
    with tarfile.open(shard) as tar:
        third = [m for m in tar.getmembers() if m.name.endswith(".png")][2]
    (tmp_path / "cut.tar").write_bytes(shard.read_bytes()[: third.offset_data + third.size // 2])
    ds = open_dataset(str(tmp_path / "cut.tar"), R)
    assert len(ds) == 2 and ds.skipped == {"truncated shard": 1}


# ----------------------------------------------------------------------------- built-in sets


def test_builtin_photos_are_deterministic_and_prefix_stable():
    a = open_dataset("builtin:photos?count=6", 24, seed=3)
    b = open_dataset("builtin:photos", 24, count=4, seed=3)
    c = open_dataset("builtin:photos?count=6&seed=4", 24)
    assert len(a) == 6 and len(b) == 4 and a[0][0].shape == (3, 24, 24)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(4))
    assert not torch.equal(a[0][0], c[0][0])
    assert a.fingerprint != c.fingerprint


def test_builtin_photo_splits_use_different_photos():
    train = open_dataset("builtin:photos?count=200", 8, labels=True)
    heldout = open_dataset("builtin:photos", 8, labels=True, split="heldout", count=50)
    assert not set(train.classes) & set(heldout.classes)
    used = {train.classes[y] for y in train.targets}
    assert used == set(train.classes)  # every training photo is used
    assert train.fingerprint != heldout.fingerprint


def test_builtin_digits_and_faces():
    from sklearn.datasets import load_digits

    digits = open_dataset("builtin:digits", 32, 1, labels=True)
    assert len(digits) == 1500 and digits.classes == [str(i) for i in range(10)]
    assert digits[0][0].shape == (1, 32, 32)
    assert list(digits.targets[:20]) == list(load_digits().target[:20])
    assert len(open_dataset("builtin:digits?split=heldout", 8)) == 297
    faces = open_dataset("builtin:faces", 20)
    assert len(faces) == 80 and len(open_dataset("builtin:faces", 20, split="heldout")) == 20
    assert faces[0][0].shape == (3, 20, 20) and faces.targets.max() == -1


# ----------------------------------------------------------------------------- fingerprints


def test_fingerprint_is_stable_and_tracks_content(data, tmp_path):
    spec = str(data["folder"])
    fp = open_dataset(spec, R).fingerprint
    assert fp == open_dataset(spec, R).fingerprint and len(fp) == 16
    assert fp == open_dataset(str(data["zip"]), R).fingerprint  # same files, same fingerprint
    others = {open_dataset(spec, R + 1).fingerprint, open_dataset(spec, R, 1).fingerprint,
              open_dataset(spec, R, count=5).fingerprint, open_dataset(spec, R, labels=True).fingerprint}
    assert fp not in others and len(others) == 4
    copy = shutil.copytree(data["folder"], tmp_path / "copy")
    assert open_dataset(str(copy), R).fingerprint == fp  # location does not matter
    (copy / "dogs" / "01.jpg").write_bytes(_encoded(_picture(123, (24, 24)), "jpeg"))
    assert open_dataset(str(copy), R).fingerprint != fp


# ----------------------------------------------------------------------------- packing


def test_packing_twice_gives_identical_shards(data, tmp_path):
    for name, workers in (("a", 0), ("b", 2)):
        pack_dataset(str(data["zip"]), tmp_path / name, R, labels=True, shard_size=4, workers=workers,
                     progress=False)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["dataset.json", "train-000000.tar", "train-000001.tar", "train-000002.tar"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "train-000000.tar").read_bytes() == (data["shards"] / "train-000000.tar").read_bytes()


def test_pack_summary_workers_and_stale_shards(data, tmp_path):
    out = tmp_path / "out"
    summary = pack_dataset(str(data["folder"]), out, R, labels=True, shard_size=3, workers=2, progress=False)
    assert summary.written == 10 and summary.skipped == FOLDER_SKIPS and summary.classes == ["cats", "dogs"]
    assert summary.lines() == [
        f"written: 10 images in 4 shards ({summary.bytes / 1e6:.1f} MB) to {out}",
        "skipped: 1 empty file, 1 not an image, 1 truncated image, 1 unsupported file type",
        "classes: 2 (cats, dogs)",
    ]
    again = pack_dataset(str(data["folder"]), out, R, shard_size=100, workers=0, progress=False)
    assert sorted(p.name for p in out.glob("*.tar")) == again.shards == ["train-000000.tar"]


def test_pack_refuses_to_write_into_its_source(data):
    for source, out in ((data["shards"], data["shards"]), (data["folder"], data["folder"] / "packed")):
        with pytest.raises(InrkitError, match="inside the dataset being packed"):
            pack_dataset(str(source), out, R, workers=0, progress=False)
    assert not (data["folder"] / "packed").exists()


def test_webdataset_reads_packed_shards(data):
    import webdataset

    pattern = str(data["shards"] / "train-{000000..000002}.tar")
    samples = list(webdataset.WebDataset(pattern, shardshuffle=False).decode("pil"))
    ours = open_dataset(pattern, R, labels=True)
    assert [s["__key__"] for s in samples] == [ours.key(i) for i in range(len(ours))]
    assert [s["cls"] for s in samples] == ours.targets.tolist()
    assert np.array_equal(np.asarray(samples[3]["png"]), np.asarray(ours.image(3)))


def test_pack_jpeg_is_close_but_lossy(data, tmp_path):
    pack_dataset("builtin:photos?count=8", tmp_path / "j", 32, image_format="jpg", quality=90, workers=0,
                 progress=False)
    packed, _ = _all(open_dataset(str(tmp_path / "j"), 32))
    original, _ = _all(open_dataset("builtin:photos?count=8", 32))
    error = (packed - original).abs().mean().item()
    assert 0 < error < 0.05


# ----------------------------------------------------------------------------- one-sentence errors


@pytest.mark.parametrize(
    ("spec", "kwargs", "words"),
    [
        ("{base}/nowhere", {}, "does not exist"),
        ("{base}/shards/val-{{000000..000003}}.tar", {}, "matches no files"),
        ("{base}/shards/train-{{000000..000009}}.tar", {}, "7 of the 10 shards"),
        ("builtin:cifar10", {}, "unknown built-in set"),
        ("builtin:photos?size=3", {}, "unknown option 'size'"),
        ("builtin:photos?count=x", {}, "not an integer"),
        ("builtin:faces", {"labels": True}, "has no labels"),
        ("builtin:digits", {"count": 5000}, "holds only 1500"),
        ("builtin:digits", {"channels": 2}, "channels must be 1"),
        ("builtin:digits", {"split": "test"}, "unknown split"),
        ("{base}/images", {"split": "heldout"}, "only for builtin"),
        ("{base}/images", {"labels": True, "count": 99}, "holds only 10"),
        ("{base}/images/notes.txt", {}, "not a folder, a .zip or a .tar"),
        ("{base}/shards/dataset.json", {}, "not a folder"),
    ],
)
def test_bad_specs_stop_with_one_sentence(data, spec, kwargs, words):
    with pytest.raises(InrkitError, match=words) as err:
        open_dataset(spec.format(base=data["base"]), R, **kwargs)
    assert_one_sentence(err)


def test_empty_and_unusable_datasets(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InrkitError, match="holds no usable images") as err:
        open_dataset(str(tmp_path / "empty"), R)
    assert_one_sentence(err)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"")
    (tmp_path / "bad" / "b.png").write_text("text")
    with pytest.raises(InrkitError, match=r"skipped: 1 empty file, 1 not an image"):
        open_dataset(str(tmp_path / "bad"), R)
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(InrkitError, match="not a readable zip file"):
        open_dataset(str(tmp_path / "bad.zip"), R)


def test_labels_need_class_folders_or_cls_members(data, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(_encoded(_picture(0, (8, 8)), "png"))
    with pytest.raises(InrkitError, match="outside class sub-folders") as err:
        open_dataset(str(flat), R, labels=True)
    assert_one_sentence(err)
    pack_dataset(str(data["folder"]), tmp_path / "unlabelled", R, workers=0, progress=False)
    with pytest.raises(InrkitError, match="carry no .cls labels"):
        open_dataset(str(tmp_path / "unlabelled"), R, labels=True)
