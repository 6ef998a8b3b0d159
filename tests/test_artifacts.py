import json
import os
import struct

import pytest
import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.fields.mlp import FourierMLP
from inrkit.models import registry


def _save_field(path):
    f = FourierMLP(width=8, depth=3, frequencies=2)
    art = artifacts.Artifact(kind="field", tensors=f.state_dict(),
                             config={"field": f.config, "signal": {"shape": [4, 4], "channels": 1}},
                             options={"steps": 1}, parents={"x": "00"}, metrics={"psnr": 12.5})
    artifacts.save(path, art)
    return f


def test_round_trip_metadata_and_weights(tmp_path):
    p = tmp_path / "f.safetensors"
    f = _save_field(p)
    art = artifacts.read(p, kind="field")
    assert art.kind == "field" and art.format_version == artifacts.FORMAT_VERSION
    assert art.metrics == {"psnr": 12.5} and art.parents == {"x": "00"} and art.options == {"steps": 1}
    assert art.inrkit_version and art.command
    g = registry.load(p)
    x = torch.rand(6, 2)
    assert torch.equal(f(x), g(x))
    assert g.signal == {"shape": [4, 4], "channels": 1}


def test_public_api_load(tmp_path):
    import inrkit

    p = tmp_path / "f.safetensors"
    f = _save_field(p)
    x = torch.rand(3, 2)
    assert torch.equal(inrkit.load(p)(x), f(x))


def test_atomic_write_leaves_previous_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.safetensors"
    _save_field(p)
    before = p.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(artifacts.os, "replace", boom)
    with pytest.raises(RuntimeError):
        _save_field(p)
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["f.safetensors"]  # no temporary left behind


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) - 10], "truncated"),
    (lambda b: b[:20], "truncated"),
    (lambda b: b"hello world, not a tensor file", "not a safetensors file"),
    (lambda b: b"", "not a safetensors file"),
])
def test_damaged_files_fail_with_one_sentence(tmp_path, damage, message):
    p = tmp_path / "f.safetensors"
    _save_field(p)
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(InrkitError, match=message):
        registry.load(p)


def _rewrite_metadata(path, **changes):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def test_wrong_kind_newer_format_and_missing_tensors(tmp_path):
    p = tmp_path / "f.safetensors"
    _save_field(p)
    with pytest.raises(InrkitError, match="is a field artifact, but a generator"):
        artifacts.read(p, kind="generator")
    _rewrite_metadata(p, format_version="99")
    with pytest.raises(InrkitError, match="newer inrkit"):
        artifacts.read(p)
    q = tmp_path / "g.safetensors"
    f = FourierMLP(width=8, depth=3, frequencies=2)
    sd = f.state_dict()
    sd["renamed"] = sd.pop("linears.0.weight")  # as many values as the config needs, one under another name
    artifacts.save(q, artifacts.Artifact(kind="field", tensors=sd, config={"field": f.config}))
    with pytest.raises(InrkitError, match="missing tensors"):
        registry.load(q)
    sd.pop("renamed")  # fewer values than the config needs: refused before the field is built
    artifacts.save(q, artifacts.Artifact(kind="field", tensors=sd, config={"field": f.config}))
    with pytest.raises(InrkitError, match="needs 169 stored values but the file holds 89"):
        registry.load(q)


def test_missing_file_and_foreign_safetensors(tmp_path):
    with pytest.raises(InrkitError, match="does not exist"):
        artifacts.read(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(InrkitError, match="not an inrkit artifact"):
        artifacts.read(tmp_path / "foreign.safetensors")


def test_no_pickle_anywhere():
    import pathlib

    import inrkit

    root = pathlib.Path(inrkit.__file__).parent
    for py in root.rglob("*.py"):
        text = py.read_text()
        assert "torch.load(" not in text and "import pickle" not in text, py


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        artifacts.atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
