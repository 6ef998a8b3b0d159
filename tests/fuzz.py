"""A seeded mutation fuzz of artifacts: one small valid artifact per kind, damaged in every way a file can be.

`make_artifact(kind, folder)` writes the valid artifact of a kind (every kind the families of
inrkit.models.registry own, plus `latents` and `train-state`, which nothing rebuilds); `mutate(data, rng)` returns
a damaged copy of a file's bytes and the name of the damage; `attempt(path, kind)` opens it as a user would and
says what happened: "loaded", "error" (one InrkitError sentence) or the name of any other exception.

Run a campaign from the command line (docs/reliability.md records one):
    OMP_NUM_THREADS=1 .venv/bin/python tests/fuzz.py --cases 10000 --seed 1   # = pytest -m slow tests/test_fuzz.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

import inrkit
from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.models import registry

OTHER_KINDS = ("latents", "train-state")  # read by artifacts.read, rebuilt by no family


# ---- one small valid artifact per kind ------------------------------------------------------------------------


def _field(folder: Path) -> artifacts.Artifact:
    from inrkit.fields.loe import LoEField

    f = LoEField(in_dim=2, out_dim=3, width=8, depth=3, tile=2, resolution=8, frequencies=2)
    return artifacts.Artifact(kind="field", tensors=f.state_dict(), config=dict(
        field=f.config, signal=dict(source="builtin:camera", shape=[8, 8], channels=3, video=False)),
        options=dict(arch="loe", steps=2), metrics=dict(psnr=12.5, ssim=0.5, params=100))


def functa_model():
    from inrkit.models.functa import SpatialFuncta

    torch.manual_seed(0)
    return SpatialFuncta((2, 2, 3), 8, 3, width=8, depth=3, interp="bilinear")


def _functa(folder: Path) -> artifacts.Artifact:
    model = functa_model()
    return artifacts.Artifact(kind="functa-model", tensors=model.state_dict(), config=dict(model=model.config),
                              options=dict(lr=1e-3), metrics=dict(step=2, images=8))


def _functaset(folder: Path) -> artifacts.Artifact:
    model = functa_model()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(latents=torch.randn(3, 2, 2, 3), labels=torch.arange(3), psnr=torch.full((3,), 20.0))
    return artifacts.Artifact(kind="functaset", tensors=tensors, config=dict(
        model=model.config, model_path=str(folder / "functa.safetensors"), model_sha256="0" * 64,
        data=dict(spec="builtin:photos", fingerprint="ab"), steps=3), parents={"functa.safetensors": "0" * 64},
        metrics=dict(psnr=20.0, count=3))


def generator_model():
    from inrkit.models.inrgan import InrGanGenerator, generator_config

    torch.manual_seed(0)
    return InrGanGenerator(generator_config(resolution=8, blocks=[[4, 1, 8], [8, 1, 8]], z_dim=4, hyper_hidden=8,
                                            out_channels=1))


def _generator(folder: Path) -> artifacts.Artifact:
    G = generator_model()
    return artifacts.Artifact(kind="generator", tensors=G.state_dict(), config=dict(
        generator=G.config, discriminator=dict(resolution=8), training=dict(batch=4)), metrics=dict(kimg=0.1))


def _latents(folder: Path) -> artifacts.Artifact:
    G = generator_model()
    return artifacts.Artifact(kind="latents", tensors=dict(latents=torch.randn(2, 8), errors=torch.rand(2)),
                              config=dict(generator=G.config, generator_path="g.safetensors", space="w"),
                              metrics=dict(mse=0.1))


def _train_state(folder: Path) -> artifacts.Artifact:
    from inrkit.train.checkpoint import save_state

    model = functa_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.meta_lr.sum().backward()
    opt.step()
    save_state(folder / "state.safetensors", dict(model=model), dict(adam=opt), {}, dict(lr=1e-3),
               dict(step=1, images=4, tick=1, tick_images=4, snapshot_images=4))
    return artifacts.read(folder / "state.safetensors")


def _classifier(folder: Path) -> artifacts.Artifact:
    from inrkit.models.classifier import FunctaClassifier, classifier_config
    from inrkit.models.classifier_family import classifier_artifact

    torch.manual_seed(0)
    functa = functa_model()
    net = FunctaClassifier(classifier_config(latent=[2, 2, 3], classes=3, width=8, depth=1, heads=2))
    return classifier_artifact(net, functa, "0" * 64, classes=["a", "b", "c"], parents={}, options={}, metrics={})


def _diffusion(folder: Path) -> artifacts.Artifact:
    from inrkit.models import diffusion as D
    from inrkit.models.diffusion_family import diffusion_artifact
    from inrkit.models.unet import build_denoiser, unet_config

    torch.manual_seed(0)
    net = build_denoiser(unet_config(latent=[2, 2, 3], arch="mlp", mlp_width=8, mlp_blocks=1))
    denoiser = D.Denoiser(net, D.alpha_bar_schedule("cosine", 10), probs=D.timestep_probabilities(10))
    settings = dict(schedule="cosine", steps=10, prediction="eps", ratio=1.0, label_dropout=0.0)
    return diffusion_artifact(denoiser, D.Normaliser.fit(torch.randn(8, 2, 2, 3)), "vector", settings,
                              functa_model(), "0" * 64, classes=[], parents={}, options={}, metrics={})


def _ginr(folder: Path) -> artifacts.Artifact:
    from inrkit.models.ginr import LocalityAwareINR, ginr_config

    torch.manual_seed(0)
    model = LocalityAwareINR(ginr_config(resolution=8, patch=4, tokens=3, width=8, depth=1, heads=2, dim=8,
                                         features=4, sigmas=(4.0, 2.0), sigma_q=2.0, decoder_heads=2))
    return artifacts.Artifact(kind="ginr-model", tensors=model.state_dict(), config=dict(model=model.config),
                              options=dict(arch="ginr", lr=1e-3), metrics=dict(step=2, images=8))


def _ginr_functaset(folder: Path) -> artifacts.Artifact:
    model = _ginr(folder)
    tensors = {f"model.{k}": v for k, v in model.tensors.items()}
    tensors.update(latents=torch.randn(3, 3, 8), labels=torch.arange(3), psnr=torch.full((3,), 20.0))
    return artifacts.Artifact(kind="ginr-functaset", tensors=tensors, config=dict(
        model=model.config["model"], model_path=str(folder / "ginr.safetensors"), model_sha256="0" * 64,
        data=dict(spec="builtin:photos", fingerprint="ab")), parents={"ginr.safetensors": "0" * 64},
        metrics=dict(psnr=20.0, count=3))


def _ginr_diffusion(folder: Path) -> artifacts.Artifact:
    from inrkit.models import diffusion as D
    from inrkit.models.ginr import LocalityAwareINR
    from inrkit.models.token_diffusion import TokenTransformer, transformer_config
    from inrkit.models.token_diffusion_family import diffusion_artifact

    ginr = LocalityAwareINR(_ginr(folder).config["model"])
    torch.manual_seed(0)
    net = TokenTransformer(transformer_config(latent=[3, 8], classes=2, width=8, depth=1, heads=2))
    denoiser = D.Denoiser(net, D.alpha_bar_schedule("linear", 10), prediction="x0", classes=2,
                          probs=D.timestep_probabilities(10))
    settings = dict(schedule="linear", steps=10, prediction="x0", ratio=1.0, label_dropout=0.1)
    return diffusion_artifact(denoiser, D.Normaliser.fit(torch.randn(8, 3, 8), "array"), "array", settings, ginr,
                              "0" * 64, classes=["a", "b"], parents={}, options={}, metrics={}, guidance=2.5)


def _loe_generator(folder: Path) -> artifacts.Artifact:
    from inrkit.models.loegan import LoeGanGenerator, generator_config

    torch.manual_seed(0)
    G = LoeGanGenerator(generator_config(arch="loe-gan", resolution=32, z_dim=4, width=8, hidden=4, tiles=(2, 4),
                                         grid_resolutions=(2, 8)))
    return artifacts.Artifact(kind="loe-generator", tensors=G.state_dict(), config=dict(generator=G.config))


MAKERS = {"field": _field, "functa-model": _functa, "functaset": _functaset, "generator": _generator,
          "latents": _latents, "train-state": _train_state, "classifier": _classifier,
          "diffusion": _diffusion, "ginr-model": _ginr, "ginr-functaset": _ginr_functaset,
          "loe-generator": _loe_generator, "ginr-diffusion": _ginr_diffusion}


def all_kinds() -> tuple[str, ...]:
    """Every kind a family owns, then the kinds nothing rebuilds."""
    return registry.known_kinds() + OTHER_KINDS


def make_artifact(kind: str, folder: Path) -> Path:
    """Write the small valid artifact of `kind` into `folder`; KeyError for a kind without a maker."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.safetensors"
    art = MAKERS[kind](folder)
    art.command = "tests/fuzz.py"  # not this process's argv: the same bytes, so the same cases, from pytest or not
    artifacts.save(path, art)
    return path


# ---- damage ---------------------------------------------------------------------------------------------------

JUNK = [None, True, False, 0, -1, 1, 7, 2**31, 2**62, 10**30, -(10**30), 1.5, -0.0, 1e308, 1e-308, "", "x",
        "nearest", "NaN", "1e400", "0" * 300, [], [1], [1, 2, 3], [[1, 2, 3]], [-1, -1, -1], [0, 0, 0],
        [2**40] * 3, {}, {"a": 1}, [None], [[[[[]]]]], "\u0000", "\U0001f600", [1.5, 2.5], list(range(40))]


def _split(data: bytes) -> tuple[int, dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _junk(rng: random.Random):
    if rng.random() < 0.15:
        return "[" * rng.choice([10, 1000, 100_000]) + "]" * rng.choice([0, 10])  # nesting and broken JSON
    return rng.choice(JUNK)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value: dict keys and list indices."""
    yield prefix, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def _set(value, path: tuple, new):
    if not path:
        return new
    value[path[0]] = _set(value[path[0]], path[1:], new)
    return value


def edit_json(text: str, rng: random.Random) -> str:
    """A metadata JSON value with one place replaced, deleted, scaled or given an unknown key."""
    value = json.loads(text)
    places = list(_paths(value))
    path, old = rng.choice(places)
    action = rng.random()
    if action < 0.15 and path:
        parent = value
        for k in path[:-1]:
            parent = parent[k]
        del parent[path[-1]]
    elif action < 0.25 and isinstance(old, dict):
        old[rng.choice(["bogus", "arch", "width", ""])] = _junk(rng)
    elif action < 0.55 and isinstance(old, (int, float)) and not isinstance(old, bool):
        value = _set(value, path, rng.choice([old * 1000, old * 10**9, -old, old + 1, old - 1, 0, old / 2]))
    else:
        value = _set(value, path, _junk(rng))
    return value if isinstance(value, str) and rng.random() < 0.1 else json.dumps(value)


def _header_edit(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A tensor entry's dtype, shape or offsets changed, a field removed, an entry dropped or duplicated."""
    n, header, body = _split(data)
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    what = rng.choice(["dtype", "shape", "offsets", "drop-field", "drop-entry", "rename", "entry-junk"])
    if what == "dtype":
        entry["dtype"] = rng.choice(["F32", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F64", "F4", "Q8", 3, None])
    elif what == "shape":
        shape = list(entry["shape"])
        choice = rng.random()
        shape = (shape + [rng.choice([1, 2])] if choice < 0.2 else shape[:-1] if choice < 0.4 else
                 [d * rng.choice([2, 1000, 10**12]) for d in shape] if choice < 0.6 else
                 [rng.choice([0, -1, 1.5, "3", 2**64])] + shape[1:] if choice < 0.8 else shape[::-1])
        entry["shape"] = shape
    elif what == "offsets":
        begin, end = entry["data_offsets"]
        delta = rng.choice([1, -1, 4, -4, 10**6, -(10**6), 2**63])
        entry["data_offsets"] = rng.choice([[begin + delta, end], [begin, end + delta], [end, begin],
                                            [begin + delta, end + delta], [0, end], [begin], "0,4"])
    elif what == "drop-field":
        del entry[rng.choice(["dtype", "shape", "data_offsets"])]
    elif what == "drop-entry":
        del header[name]
    elif what == "rename":
        header[name + rng.choice(["x", ".extra", ""]) + "_"] = header.pop(name)
    else:
        header[name] = _junk(rng)
    return _join(header, body), f"tensor-{what}"


def _metadata_edit(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A metadata value replaced by junk, made non-JSON, or one place inside its JSON edited."""
    n, header, body = _split(data)
    meta = header["__metadata__"]
    key = rng.choice(list(meta) + ["extra"])
    choice = rng.random()
    if key in artifacts.JSON_KEYS and choice < 0.6:
        meta[key] = edit_json(meta[key], rng)
        return _join(header, body), f"json-{key}"
    if choice < 0.8:
        meta[key] = rng.choice(["", "{", "[]", "null", "1", "x" * 1000, "2", "-1", "1.5", "99", "field", "\n"])
    elif choice < 0.9:
        meta.pop(key, None)
    else:
        meta[key] = _junk(rng)  # not even a string
    return _join(header, body), f"meta-{key}"


def _bytes_edit(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Truncation, flipped bytes (header or tensors), a new header length, junk appended."""
    n = struct.unpack("<Q", data[:8])[0]
    what = rng.choice(["truncate", "flip-header", "flip-body", "length", "append"])
    if what == "truncate":
        return data[: rng.randrange(len(data))], what
    if what == "length":
        value = rng.choice([0, 1, 2, n - 1, n + 1, n + 8, len(data), 2**63, 2**64 - 1, rng.randrange(2**32)])
        return struct.pack("<Q", value) + data[8:], what
    if what == "append":
        return data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 64]))), what
    out = bytearray(data)
    lo, hi = (0, 8 + n) if what == "flip-header" else (8 + n, len(data))
    for _ in range(rng.choice([1, 2, 8])):
        if hi > lo:
            out[rng.randrange(lo, hi)] = rng.randrange(256)
    return bytes(out), what


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A damaged copy of a valid artifact's bytes, and what was done (sometimes two damages at once)."""
    edit = rng.choice([_bytes_edit, _header_edit, _metadata_edit, _metadata_edit])
    data, what = edit(data, rng)
    if rng.random() < 0.1:
        try:
            data, second = rng.choice([_header_edit, _metadata_edit])(data, rng)
            what += "+" + second
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError, struct.error):
            pass  # the first damage left nothing the second can parse: one damage it is
    return data, what


# ---- what a user meets ---------------------------------------------------------------------------------------


def attempt(path: Path, kind: str) -> str:
    """Open the file as a user would: inrkit.load for a kind a family rebuilds, artifacts.read otherwise.
    "loaded", "error" (one InrkitError sentence naming the file) or what went wrong instead."""
    try:
        if kind in registry.known_kinds():
            inrkit.load(path)
        else:
            artifacts.read(path)
    except InrkitError as err:
        if "\n" in str(err):
            return "multi-line error"
        return "error" if str(path) in str(err) else f"error without the file's name: {str(err)[:80]}"
    except Exception as err:  # anything else is the bug this fuzz looks for
        return type(err).__name__
    return "loaded"


def run_cli(*args: str) -> tuple[int, str]:
    """`inrkit ARGS` in this process, as the console script runs it: (exit code, stderr). An exception that
    escapes the CLI's error printing is re-raised, as the traceback a user would see."""
    from inrkit.cli import main

    err = io.StringIO()
    argv, sys.argv = sys.argv, ["inrkit", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    return code, err.getvalue()


def attempt_cli(path: Path, out: Path) -> str:
    """`inrkit info PATH` and `inrkit render PATH`: "clean" when both exit 0, or 1 with one line on stderr and no
    traceback; otherwise what went wrong."""
    for args in (("info", str(path)), ("render", str(path), "--out", str(out), "--device", "cpu")):
        try:
            code, err = run_cli(*args)
        except Exception as escaped:
            return f"{args[0]}: {type(escaped).__name__}"
        if code not in (0, 1) or "Traceback" in err or (code == 1 and len(err.strip().splitlines()) != 1):
            return f"{args[0]}: exit {code}, {err.strip()[:200]!r}"
    return "clean"


def campaign(kind: str, cases: int, seed: int, folder: Path, keep: Path | None = None, cli_every: int = 10) -> dict:
    """`cases` damaged copies of the kind's artifact, each opened with `attempt` and every `cli_every`-th also
    through the CLI (`attempt_cli`): counts per outcome, the slowest case and the escapes (their files copied
    into `keep`, when given)."""
    base = make_artifact(kind, folder).read_bytes()
    rng = random.Random(f"{seed}-{kind}")
    outcomes, cli, slowest, escapes = Counter(), Counter(), 0.0, []
    path = folder / f"damaged-{kind}.safetensors"
    for case in range(cases):
        data, what = mutate(base, rng)
        path.write_bytes(data)
        start = time.perf_counter()
        found = [attempt(path, kind)]
        slowest = max(slowest, time.perf_counter() - start)
        outcomes[found[0]] += 1
        if cli_every and case % cli_every == 0:
            found.append(attempt_cli(path, folder / "render.png"))
            cli[found[1]] += 1
        bad = [f for f in found if f not in ("loaded", "error", "clean")]
        if bad:
            escapes.append((case, what, bad))
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"{kind}-{case}.safetensors").write_bytes(data)
    return dict(kind=kind, cases=cases, outcomes=dict(outcomes), cli=dict(cli), slowest=slowest,
                escapes=escapes[:20])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="damaged copies per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(all_kinds()))
    parser.add_argument("--keep", type=Path, help="copy the files of any escapes here")
    parser.add_argument("--cli-every", type=int, default=50, help="every N-th case also through the CLI")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            start = time.perf_counter()
            r = campaign(kind, args.cases, args.seed, Path(tmp) / kind, args.keep, args.cli_every)
            print(json.dumps(dict(r, seconds=round(time.perf_counter() - start, 1))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
