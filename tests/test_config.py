"""Stage configs (inrkit/stages/configs.py) as the one source of defaults: `--config` recipes for fit, meta and
train-gan, refusal of unknown keys by name, command line over file over dataclass, variants, --help defaults,
resume marks, and the core helpers (inrkit/core/config.py)."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from inrkit import cli
from inrkit.cli.declare import command
from inrkit.core import config
from inrkit.core.checks import flag
from inrkit.core.errors import InrkitError
from inrkit.stages.configs import ClassifierConfig, DiffusionConfig, FitConfig, MetaConfig, TrainGanConfig

ROOT = Path(__file__).resolve().parents[1]
# The smallest train-gan that --dry-run sizes quickly (no data is read in a dry run).
GAN = ["--data", "builtin:digits", "--resolution", "16", "--blocks", "8x1x16,16x1x16", "--d-channel-base", "64",
       "--d-channel-max", "16", "--batch", "8", "--device", "cpu", "--dry-run"]


def inrkit(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `inrkit ARGS` through the real entry point, in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["inrkit", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    return exc.value.code or 0, captured.out, captured.err


def recipe(tmp_path: Path, options: dict, variants: dict | None = None, **top) -> Path:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(dict(top, options=options, **({"variants": variants} if variants else {}))))
    return path


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """The keyword arguments `inrkit fit` and `inrkit meta` pass to their stages (which do not run)."""
    import inrkit.stages.fit
    import inrkit.stages.meta

    seen: list[dict] = []
    monkeypatch.setattr(inrkit.stages.fit, "fit", lambda **kw: seen.append(dict(kw, stage="fit")))
    monkeypatch.setattr(inrkit.stages.meta, "meta", lambda **kw: seen.append(dict(kw, stage="meta")))
    return seen


STAGE_ARGS = {"fit": ["fit", "builtin:camera"], "meta": ["meta", "--data", "builtin:photos"]}


def one_call(calls: list[dict], stage: str) -> dict:
    assert [c["stage"] for c in calls] == [stage]
    return calls[0]


# ---------------------------------------------------------------- fit and meta: what reaches the stage

@pytest.mark.parametrize("stage, cls", [("fit", FitConfig), ("meta", MetaConfig)])
def test_config_file_values_reach_the_stage(stage, cls, calls, monkeypatch, capsys, tmp_path):
    path = recipe(tmp_path, dict(width=24, steps=7))
    code, _, err = inrkit(monkeypatch, capsys, *STAGE_ARGS[stage], "--config", path)
    assert code == 0, err
    kw = one_call(calls, stage)
    assert (kw["width"], kw["steps"]) == (24, 7)
    assert kw["depth"] == config.defaults(cls)["depth"]  # not in the file, not typed: the dataclass default
    assert set(kw) - {"stage"} == {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("stage", ["fit", "meta"])
def test_command_line_wins_over_the_file(stage, calls, monkeypatch, capsys, tmp_path):
    path = recipe(tmp_path, dict(width=24, steps=7, depth=3))
    # --depth is typed with the dataclass default: typed values win even when they equal the default.
    default_depth = config.defaults(FitConfig if stage == "fit" else MetaConfig)["depth"]
    code, _, err = inrkit(monkeypatch, capsys, *STAGE_ARGS[stage], "--steps", 5, "--depth", default_depth,
                          "--config", path)
    assert code == 0, err
    kw = one_call(calls, stage)
    assert (kw["steps"], kw["depth"], kw["width"]) == (5, default_depth, 24)


@pytest.mark.parametrize("stage", ["fit", "meta"])
def test_variant_applies_over_the_options(stage, calls, monkeypatch, capsys, tmp_path):
    path = recipe(tmp_path, dict(width=24, steps=7), variants=dict(wide=dict(width=48), other=dict(steps=1)))
    code, _, err = inrkit(monkeypatch, capsys, *STAGE_ARGS[stage], "--config", f"{path}#wide")
    assert code == 0, err
    kw = one_call(calls, stage)
    assert (kw["width"], kw["steps"]) == (48, 7)


def test_fit_size_text_from_the_file_is_parsed(calls, monkeypatch, capsys, tmp_path):
    code, _, err = inrkit(monkeypatch, capsys, "fit", "builtin:camera", "--config", recipe(tmp_path, dict(size="24")))
    assert code == 0, err
    assert one_call(calls, "fit")["size"] == (24, 24)
    calls.clear()
    code, _, err = inrkit(monkeypatch, capsys, "fit", "builtin:camera", "--size", "16x32")
    assert code == 0, err
    assert one_call(calls, "fit")["size"] == (16, 32)


def test_meta_booleans_and_data_from_the_file(calls, monkeypatch, capsys, tmp_path):
    path = recipe(tmp_path, dict(data="builtin:digits", first_order=True, functasets=False))
    code, _, err = inrkit(monkeypatch, capsys, "meta", "--config", path)
    assert code == 0, err
    kw = one_call(calls, "meta")
    assert (kw["data"], kw["first_order"], kw["functasets"]) == ("builtin:digits", True, False)
    assert kw["out"] == Path("out/functa.safetensors")
    calls.clear()
    code, _, err = inrkit(monkeypatch, capsys, "meta", "--second-order", "--functasets", "--config", path)
    assert code == 0, err
    kw = one_call(calls, "meta")
    assert (kw["first_order"], kw["functasets"]) == (False, True)


def test_meta_without_data_names_the_flag(calls, monkeypatch, capsys):
    code, _, err = inrkit(monkeypatch, capsys, "meta", "--steps", 2)
    assert code == 1 and calls == []
    assert err.strip() == "inrkit: error: --data is needed (neither given nor set by the recipe)."


# ---------------------------------------------------------------- train-gan through --dry-run

def dry_run_options(out: str) -> dict:
    line = next(line for line in out.splitlines() if line.startswith("options: "))
    return json.loads(line.removeprefix("options: "))


def test_train_gan_config_file_and_command_line(monkeypatch, capsys, tmp_path):
    path = recipe(tmp_path, dict(z_dim=24, hyper_hidden=48, fmm_rank=3), variants=dict(big=dict(hyper_hidden=64)))
    code, out, err = inrkit(monkeypatch, capsys, "train-gan", *GAN, "--out", tmp_path / "g.safetensors",
                            "--z-dim", 16, "--no-flip", "--config", f"{path}#big")
    assert code == 0, err
    options = dry_run_options(out)
    assert (options["z_dim"], options["hyper_hidden"], options["fmm_rank"]) == (16, 64, 3)  # line > variant > file
    assert options["flip"] is False and options["r1_gamma"] == config.defaults(TrainGanConfig)["r1_gamma"]
    assert "GMACs per image" in out and not (tmp_path / "g.safetensors").exists()


def test_train_gan_data_from_the_file(monkeypatch, capsys, tmp_path):
    path = recipe(tmp_path, dict(data="builtin:digits", z_dim=24))
    args = [a for a in GAN if a not in ("--data", "builtin:digits")]
    code, out, err = inrkit(monkeypatch, capsys, "train-gan", *args, "--config", path)
    assert code == 0, err
    assert dry_run_options(out)["data"] == "builtin:digits" and dry_run_options(out)["z_dim"] == 24


# ---------------------------------------------------------------- refusals: one line, by name

@pytest.mark.parametrize("stage, args, foreign", [
    ("fit", ["fit", "builtin:camera"], "latent"),              # a meta option
    ("meta", ["meta", "--data", "builtin:photos"], "arrangement"),  # a fit option
    ("train-gan", ["train-gan", *GAN], "inner_steps"),        # a meta option
])
def test_an_option_the_stage_does_not_know_is_refused_by_name(stage, args, foreign, calls, monkeypatch, capsys,
                                                               tmp_path):
    path = recipe(tmp_path, {"steps" if stage != "train-gan" else "kimg": 1, foreign: 1})
    code, out, err = inrkit(monkeypatch, capsys, *args, "--config", path)
    assert code == 1 and calls == [] and "options:" not in out
    assert err.strip() == f"inrkit: error: recipe {path} sets unknown option {foreign!r} for {stage}."
    assert "Traceback" not in err


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    ('["width"]', "should hold a JSON object"),
    ('{"options": {}, "optons": {}}', "has unknown key 'optons'"),
    ('{"options": {"width": 1}, "variants": {"a": 3}}', "every variant should be"),
])
def test_bad_recipe_files_are_one_sentence(content, message, calls, monkeypatch, capsys, tmp_path):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    code, _, err = inrkit(monkeypatch, capsys, "fit", "builtin:camera", "--config", path)
    assert code == 1 and calls == [] and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_variant_lists_the_variants(tmp_path):
    path = recipe(tmp_path, dict(width=2), variants=dict(a=dict(width=3), b=dict(width=4)))
    with pytest.raises(InrkitError, match=r"has no variant 'c'; it has a, b\."):
        config.load_recipe(f"{path}#c", FitConfig)


# ---------------------------------------------------------------- --help shows the dataclass defaults

@pytest.mark.parametrize("name, cls", [("fit", FitConfig), ("meta", MetaConfig), ("train-gan", TrainGanConfig)])
def test_declared_options_are_the_dataclass_fields(name, cls):
    """Every CLI field is an option (or fit's SIGNAL) whose default, shown by --help, is the dataclass's."""
    group = typer.main.get_command(cli.app)
    params = {p.name: p for p in group.commands[name].params}
    for f in dataclasses.fields(cls):
        if not f.metadata["cli"]:
            assert f.name not in params
            continue
        param, default = params[f.name], config.default_of(f)
        assert param.default == (None if default is dataclasses.MISSING else default), f.name
        if f.name != "signal":
            assert flag(f.name) in param.opts and param.show_default is (default is not dataclasses.MISSING)
    assert "--config" in params["config"].opts


def test_help_prints_the_dataclass_default():
    """Change detector: the same command declared from a dataclass with another default shows that default."""
    def help_of(default: int) -> str:
        @dataclass
        class ToyConfig:
            steps: int = config.option(default, "Optimisation steps.")
            fast: bool = config.option(False, "Go fast.")

        app = typer.Typer(add_completion=False, rich_markup_mode=None)
        app.command("toy")(command(ToyConfig, lambda kw: None, doc="A toy."))
        app.command("other")(lambda: None)  # two commands: `toy` stays a sub-command
        result = CliRunner().invoke(app, ["toy", "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert "--steps <int> Optimisation steps. [default: 7]" in help_of(7)
    assert "--steps <int> Optimisation steps. [default: 9]" in help_of(9)
    assert "--fast / --no-fast Go fast. [default: no-fast]" in help_of(9)


def test_real_help_shows_defaults_from_the_configs(monkeypatch, capsys):
    code, out, _ = inrkit(monkeypatch, capsys, "train-gan", "--help")
    text = " ".join(out.split())
    assert code == 0 and "--config FILE[#VARIANT]" in text
    assert f"[default: {config.defaults(TrainGanConfig)['r1_gamma']}]" in text
    assert "--first-order / --second-order" in " ".join(inrkit(monkeypatch, capsys, "meta", "--help")[1].split())


# ---------------------------------------------------------------- resume marks and the core helpers

def test_resume_keys_are_the_stages_training_keys():
    assert set(config.resume_keys(MetaConfig)) == {
        "data", "count", "arch", "latent", "interp", "kernel", "resolution", "channels", "width", "depth", "w0",
        "coords", "siren_bias", "inner_steps", "first_order", "lr", "batch", "seed",
        "patch", "tokens", "encoder_width", "encoder_depth", "encoder_heads", "dim", "features", "sigmas", "sigma_q",
        "decoder_heads", "selective", "multiband", "fraction"}  # --arch ginr
    assert set(config.resume_keys(TrainGanConfig)) == {
        "data", "arch", "resolution", "channels", "blocks", "fmm_rank", "modulation", "fourier", "multiscale",
        "upsample", "fourier_scale", "z_dim", "flip", "hyper_hidden", "d_channel_base", "d_channel_max", "batch",
        "lr_g", "lr_shared", "lr_d", "r1_gamma", "r1_every", "ema_kimg", "ema_rampup", "seed",
        "loe_width", "loe_hidden", "loe_tiles", "loe_grid", "loe_embedding", "loe_frequencies",
        "loe_d_base", "loe_betas"}  # --arch loe-gan|pe-ce
    # Options that only say where, how long or how often never stop a resume.
    run_control = {"out", "seconds", "tick", "snapshot", "tick_kimg", "snapshot_ticks", "device", "workers",
                   "progress", "dry_run", "keep_snapshots", "precision", "compile"}  # a run may go on elsewhere
    for cls in (FitConfig, MetaConfig, TrainGanConfig):
        assert not run_control & set(config.resume_keys(cls)), cls.__name__


def test_stage_signatures_have_the_config_defaults():
    """A stage's named parameters are config fields with the same defaults (a stage that takes **options and
    builds its config has nothing left to drift); without **options it names every field."""
    import inspect

    from inrkit.stages.fit import fit
    from inrkit.stages.meta import meta
    from inrkit.stages.train_gan import train_gan

    for function, cls in ((fit, FitConfig), (meta, MetaConfig), (train_gan, TrainGanConfig)):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        params = inspect.signature(function).parameters
        named = {k: p for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        if len(named) == len(params):
            assert list(named) == list(fields), cls.__name__
        for name, p in named.items():
            assert name in fields, (cls.__name__, name)
            if p.default is not inspect.Parameter.empty:
                assert p.default == config.default_of(fields[name]), (cls.__name__, name)


def test_build_and_options_of():
    cfg = config.build(MetaConfig, data="builtin:photos", out=Path("o/m.safetensors"), width=32)
    assert (cfg.width, cfg.depth) == (32, 6)
    options = config.options_of(cfg)
    assert options["out"] == "o/m.safetensors" and json.loads(json.dumps(options)) == options
    with pytest.raises(InrkitError, match=r"^meta has no option 'foo'\.$"):
        config.build(MetaConfig, data="x", foo=1)
    with pytest.raises(InrkitError, match=r"^train-gan needs the option 'data'\.$"):
        config.build(TrainGanConfig, z_dim=8)


def test_mutable_defaults_are_not_shared():
    @dataclass
    class ListConfig:
        sizes: list = config.option([1, 2], "Sizes.")

    a, b = config.build(ListConfig), config.build(ListConfig)
    a.sizes.append(3)
    assert b.sizes == [1, 2] and config.defaults(ListConfig) == {"sizes": [1, 2]}


def test_resolve_order_and_required():
    path_free = config.resolve(FitConfig, dict(signal="builtin:camera", steps=3))
    assert path_free["steps"] == 3 and path_free["width"] == 64 and path_free["progress"] is True
    with pytest.raises(InrkitError, match=r"^--data is needed \(neither given nor set by the recipe\)\.$"):
        config.resolve(TrainGanConfig, dict(z_dim=8))
    with pytest.raises(InrkitError, match=r"^fit has no option 'latent'\.$"):
        config.resolve(FitConfig, dict(signal="x", latent="4"))


def test_shipped_recipes_load_with_every_variant():
    """Every recipe's usage names the command it is for, and it (and each variant) resolves for that command."""
    commands = {"fit": FitConfig, "meta": MetaConfig, "train-gan": TrainGanConfig,
                "train-classifier": ClassifierConfig, "train-diffusion": DiffusionConfig}
    paths = sorted((ROOT / "recipes").glob("*.json"))
    assert len(paths) >= 2
    for path in paths:
        recipe = json.loads(path.read_text())
        stage = next(c for c in recipe["usage"].split() if c in commands)
        assert f"{stage} --config recipes/{path.name}" in recipe["usage"], path.name
        for variant in ["", *recipe.get("variants", {})]:
            given = dict(signal="builtin:camera") if stage == "fit" else dict(data="builtin:photos")
            kw = config.resolve(commands[stage], given, f"{path}#{variant}")
            assert set(kw) == {f.name for f in dataclasses.fields(commands[stage])}
    flat = config.load_recipe(f"{ROOT / 'recipes' / 'spatial-functa-cifar10.json'}#functa-1024", MetaConfig)
    assert (flat["arch"], flat["latent"], flat["width"], flat["depth"]) == ("functa", "1024", 512, 15)
