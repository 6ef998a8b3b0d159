"""The Makefile's pipelines: `make -n` of each in tiny and paper mode (every stage's command, in chain order),
`make help`, the refusal of paper mode without DATA, the functa chain run for real at tiny size, twice (the
second run rebuilds nothing), and the INR-GAN paper recipes as train-gan --config reads them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

# Each pipeline's stages as the text that starts its command line, in the order they must run.
STAGES = {
    "inrgan": ["inrkit train-gan", "inrkit render", "--scale 2", "--grid=-0.5,1.5", "--size", "inrkit fid",
               "inrkit kpl"],
    "loe-gan": ["inrkit train-gan", "inrkit render", "--scale 2", "--grid=-0.5,1.5", "--size", "inrkit fid"],
    "functa": ["inrkit meta", "inrkit encode", "inrkit render", "--scale 2"],
    "functa-classify": ["inrkit meta", "--augment", "inrkit encode", "inrkit train-classifier", "inrkit classify"],
    "functa-diffusion": ["inrkit meta", "inrkit encode", "inrkit train-diffusion", "--save-latents", "--scale 2",
                         "inrkit fid"],
}
OUT_VAR = {"inrgan": "OUT_INRGAN", "loe-gan": "OUT_LOEGAN", "functa": "OUT_FUNCTA", "functa-classify": "OUT_CLF",
           "functa-diffusion": "OUT_DIF"}


def make(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    # -o: never rebuild the venv from a test (pyproject.toml may be newer than .venv/.installed); --no-print-directory
    # keeps the output to the commands.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RECIPE", "DATA", "HELDOUT", "MAKEFLAGS"):  # the test decides the mode, not the caller's shell
        env.pop(name, None)
    result = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "-o", ".venv/.installed", *args],
                            capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def commands(output: str) -> list[str]:
    return [line for line in output.splitlines() if "bin/inrkit " in line]


def in_order(lines: list[str], stages: list[str]) -> bool:
    """Each stage's text appears on a later line than the previous stage's."""
    at = -1
    for stage in stages:
        at = next((i for i in range(at + 1, len(lines)) if stage in lines[i]), None)
        if at is None:
            return False
    return True


@pytest.mark.parametrize("pipeline", sorted(STAGES))
@pytest.mark.parametrize("mode", [[], ["RECIPE=paper", "DATA=x", "HELDOUT=y"]], ids=["tiny", "paper"])
def test_dry_run_lists_every_stage_in_order(pipeline, mode, tmp_path):
    lines = commands(make("-n", pipeline, f"{OUT_VAR[pipeline]}={tmp_path}", *mode).stdout)
    assert in_order(lines, STAGES[pipeline]), lines
    assert all(str(tmp_path) in line for line in lines)  # every output goes to the pipeline's OUT folder
    train = lines[0]
    if mode:  # paper: the recipe and the data, nothing the recipe would have to lose to
        recipe = {"inrgan": "inrgan-ffhq256", "loe-gan": "loe-gan-ffhq256"}.get(pipeline, "spatial-functa-cifar10")
        assert f"--config recipes/{recipe}.json --data 'x'" in train and "--resolution" not in train
        assert (ROOT / "recipes" / f"{recipe}.json").is_file()
    else:
        assert "--config" not in train and "builtin:" in train


def test_help_lists_targets_and_pipelines():
    out = make("help").stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert {"inrgan", "loe-gan", "functa", "functa-classify", "demo", "test", "test-slow", "lint", "venv", "clean",
            "help"} <= listed


@pytest.mark.parametrize("pipeline", sorted(STAGES))
def test_paper_mode_without_data_is_refused(pipeline):
    result = make("-n", pipeline, "RECIPE=paper", check=False)
    assert result.returncode != 0 and "RECIPE=paper needs DATA=" in result.stderr
    assert commands(result.stdout) == []  # refused before any stage


def test_functa_chain_end_to_end_then_nothing_to_do(tmp_path):
    out = tmp_path / "functa"
    first = make("functa", f"OUT_FUNCTA={out}", "META_STEPS=20")  # the tiny chain, shorter still
    assert in_order(commands(first.stdout), STAGES["functa"])
    made = ["model.safetensors", "heldout.safetensors", "heldout.png", "heldout_x2.png"]
    assert all((out / name).is_file() for name in made), sorted(p.name for p in out.iterdir())
    from PIL import Image

    small, large = (Image.open(out / name).size for name in ("heldout.png", "heldout_x2.png"))
    assert large[0] > small[0] and large[1] > small[1]  # --scale 2 drew a denser grid
    stamps = {name: (out / name).stat().st_mtime_ns for name in made}
    second = make("functa", f"OUT_FUNCTA={out}", "META_STEPS=20")
    assert "Nothing to be done" in second.stdout and commands(second.stdout) == []
    assert stamps == {name: (out / name).stat().st_mtime_ns for name in made}
    # A newer functaset makes only the stages after it out of date (asked with -n: nothing runs).
    os.utime(out / "heldout.safetensors")
    stale = commands(make("-n", "functa", f"OUT_FUNCTA={out}").stdout)
    assert len(stale) == 2 and all("inrkit render" in line for line in stale), stale


# App. A's INR blocks (resolution, layers, width), from the paper's text rather than from inrkit's defaults.
PAPER_BLOCKS = {"inrgan-ffhq256": [[128, 4, 512], [256, 4, 512]],
                "inrgan-ffhq1024": [[128, 3, 512], [256, 3, 512], [512, 2, 128], [1024, 2, 32]]}


@pytest.mark.parametrize("recipe", sorted(PAPER_BLOCKS))
def test_inrgan_recipes_resolve_to_the_paper_generator(recipe, tmp_path, capsys):
    from inrkit.cli import app

    path = ROOT / "recipes" / f"{recipe}.json"
    doc = json.loads(path.read_text())
    assert {"description", "usage", "source", "options"} <= set(doc)
    for name, variant in doc.get("variants", {}).items():
        assert set(variant) <= set(doc["options"]), name  # variants change options, add none
    app(["train-gan", "--config", str(path), "--data", "builtin:faces", "--dry-run", "--device", "cpu",
         "--out", str(tmp_path / "g.safetensors")], standalone_mode=False)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("generator: {"))
    generator = json.loads(line.removeprefix("generator: "))
    assert generator["blocks"] == PAPER_BLOCKS[recipe] and generator["z_dim"] == 512
    assert generator["hyper_hidden"] == 1024 and generator["fmm_rank"] == 10
    assert list(tmp_path.iterdir()) == []
