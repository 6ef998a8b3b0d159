"""`inrkit data pack|show` through typer's CliRunner: outputs, files, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from test_data import write_image_folder
from typer.testing import CliRunner

from inrkit.cli.data import data_app

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("cli") / "images")


def invoke(*args: str):
    return runner.invoke(data_app, [str(a) for a in args])


def test_pack_prints_a_summary_and_writes_shards(folder, tmp_path):
    out = tmp_path / "shards"
    result = invoke("pack", folder, "--out", out, "--resolution", 16, "--labels", "--shard-size", 6,
                    "--workers", 0)
    assert result.exit_code == 0, result.output
    assert "written: 10 images in 2 shards" in result.stdout
    assert "skipped: 1 empty file, 1 not an image, 1 truncated image, 1 unsupported file type" in result.stdout
    assert "classes: 2 (cats, dogs)" in result.stdout
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == 10 and meta["classes"] == ["cats", "dogs"] and meta["resolution"] == 16


def test_show_writes_a_labelled_grid_and_prints_facts(tmp_path):
    grid = tmp_path / "grid.png"
    result = invoke("show", "builtin:digits", "--labels", "--num", 12, "--columns", 4, "--out", grid)
    assert result.exit_code == 0, result.output
    assert Image.open(grid).size == (4 * 64, 3 * (64 + 14))
    assert "count: 1500" in result.stdout
    assert "resolution: 64x64 (stored as 8x8 (12))" in result.stdout
    assert "classes: 10: 0 (" in result.stdout


def test_show_reads_packed_shards(folder, tmp_path):
    invoke("pack", folder, "--out", tmp_path / "s", "-r", 20, "--labels", "--workers", 0)
    result = invoke("show", tmp_path / "s", "--labels", "--out", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert "count: 10" in result.stdout and "stored as 20x20 (10)" in result.stdout
    assert "classes: 2: cats (5), dogs (5)" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["show", "{tmp}/missing"], "does not exist"),
        (["show", "{tmp}/empty"], "holds no usable images"),
        (["show", "{tmp}/shards/train-{{000000..000009}}.tar"], "matches no files"),
        (["show", "builtin:faces", "--labels"], "has no labels"),
        (["pack", "builtin:digits", "--out", "{tmp}/o", "-r", "8", "--format", "gif"], "unknown image format"),
        (["pack", "builtin:digits", "--out", "{tmp}/o", "-r", "0"], "resolution must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, args, words):
    (tmp_path / "empty").mkdir()
    result = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert result.stderr.startswith("inrkit: error: ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_help_explains_the_data_syntax():
    result = invoke("pack", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "builtin:photos" in text and "Example: inrkit data pack" in text and "--shard-size" in text
