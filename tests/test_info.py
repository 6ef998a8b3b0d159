"""`inrkit info`: header-only summary of an artifact, its parents' sha256 checks, and the typer command."""

import json

import pytest
import torch
import typer
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from inrkit.cli.info import register
from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.stages.fit import fit
from inrkit.stages.info import format_info, human_bytes, info


@pytest.fixture(scope="module")
def field_path(tmp_path_factory):
    """A real (tiny) fitted field; 16x16 because SSIM's 11-pixel window needs at least that."""
    out = tmp_path_factory.mktemp("info") / "cam.safetensors"
    fit("builtin:camera", out, arch="siren", depth=2, width=8, steps=2, size=(16, 16), device="cpu",
        progress=False)
    return out


def child(tmp_path, parents: dict, config: dict | None = None, version: int = artifacts.FORMAT_VERSION):
    """An artifact made 'from' other files: only its header matters to info."""
    path = tmp_path / "child.safetensors"
    art = artifacts.Artifact(kind="functaset", tensors=dict(latents=torch.zeros(3, 5)), config=config or {},
                             command="inrkit encode model.safetensors", parents=parents, format_version=version)
    return artifacts.save(path, art)


def test_info_of_a_fitted_field(field_path):
    d = info(field_path)
    stored = artifacts.read(field_path)
    assert d["kind"] == "field" and d["format_version"] == artifacts.FORMAT_VERSION and d["readable"]
    assert d["config"] == stored.config and d["options"]["arch"] == "siren" and d["options"]["steps"] == 2
    assert d["metrics"]["psnr"] == stored.metrics["psnr"] and d["inrkit_version"] == stored.inrkit_version
    assert d["tensors"]["count"] == len(stored.tensors)
    assert d["tensors"]["bytes"] == sum(t.numel() * t.element_size() for t in stored.tensors.values())
    assert d["parents"] == []
    text = format_info(d)
    assert "kind            field" in text and "field.arch" in text and "siren" in text
    assert f"{d['tensors']['bytes']:,} bytes" in text and "(none)" in text  # no parents


def test_parents_present_changed_and_missing(tmp_path, field_path):
    changed = tmp_path / "changed.safetensors"
    changed.write_bytes(b"was this")
    parents = {str(field_path): artifacts.sha256(field_path), str(changed): artifacts.sha256(changed),
               str(tmp_path / "gone.safetensors"): "0" * 64}
    changed.write_bytes(b"now this")
    rows = {p["path"]: p for p in info(child(tmp_path, parents))["parents"]}
    assert rows[str(field_path)]["present"] and rows[str(field_path)]["matches"] is True
    assert rows[str(changed)]["present"] and rows[str(changed)]["matches"] is False
    assert not rows[str(tmp_path / "gone.safetensors")]["present"]
    assert rows[str(tmp_path / "gone.safetensors")]["matches"] is None
    text = format_info(info(child(tmp_path, parents)))
    assert "sha256 matches" in text and "sha256 DIFFERS" in text and "missing" in text


def test_functaset_model_sha256_is_checked_like_a_parent(tmp_path, field_path):
    """A functaset written without parents still names its model in config; that is checked too, and a
    relative path is found beside the artifact."""
    (tmp_path / "model.safetensors").write_bytes(field_path.read_bytes())
    config = dict(model_path="model.safetensors", model_sha256=artifacts.sha256(field_path))
    (row,) = info(child(tmp_path, {}, config))["parents"]
    assert row["path"] == "model.safetensors" and row["present"] and row["matches"] is True
    config["model_sha256"] = "f" * 64
    assert info(child(tmp_path, {}, config))["parents"][0]["matches"] is False
    # recorded in both places (as encode does): listed once
    assert len(info(child(tmp_path, {"model.safetensors": "f" * 64}, config))["parents"]) == 1


def test_newer_format_is_shown_but_marked(tmp_path):
    d = info(child(tmp_path, {}, version=artifacts.FORMAT_VERSION + 1))
    assert not d["readable"] and "newer than this inrkit reads" in format_info(d)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"not an artifact at all"])
def test_non_artifact_is_one_clear_error(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(InrkitError, match="is not a safetensors file"):
        info(path)
    with pytest.raises(InrkitError, match="does not exist"):
        info(tmp_path / "nope.safetensors")


def test_foreign_safetensors_is_not_an_artifact(tmp_path):
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(st_save({"w": torch.zeros(2)}, metadata={"format": "pt"}))
    with pytest.raises(InrkitError, match="not an inrkit artifact"):
        info(path)


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 2**20, 3 * 2**30)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 GiB"]


def test_cli_prints_text_and_json(field_path):
    app = typer.Typer()
    register(app)

    @app.command("other")  # a second command, so typer keeps `info` as a named subcommand as in inrkit
    def other() -> None:
        pass

    runner = CliRunner()
    r = runner.invoke(app, ["info", str(field_path)])
    assert r.exit_code == 0, r.output
    assert "kind            field" in r.output and "psnr" in r.output
    r = runner.invoke(app, ["info", str(field_path), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d == json.loads(json.dumps(info(field_path)))
    assert {"kind", "format_version", "inrkit_version", "command", "config", "options", "parents", "metrics",
            "tensors"} <= set(d)
