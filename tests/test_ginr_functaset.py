"""GINR token functasets (kind ginr-functaset, inrkit.models.ginr_family): meta --arch ginr's final sets and
`inrkit encode GINR_MODEL` (one forward pass of the encoder, R x d tokens per image, labels, PSNR per item),
`inrkit render` of them on any grid, the locality picture of Sec. 4.3, and bad input refused in one sentence
with nothing written."""

import math

import fuzz
import numpy as np
import pytest
import torch
from PIL import Image

import inrkit
from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import to_uint8
from inrkit.data import open_dataset
from inrkit.fields.grid import make_grid
from inrkit.metrics.image import psnr_per_item
from inrkit.models.ginr import LocalityAwareINR, ginr_config
from inrkit.models.ginr_family import TokenFunctaset, locality_maps, locality_picture, token_colours
from inrkit.stages.encode import encode_artifact
from inrkit.stages.info import info
from inrkit.stages.meta import meta
from inrkit.stages.render import render
from inrkit.stages.train_classifier import read_functaset

GINR_META = dict(arch="ginr", resolution=16, patch=4, tokens=8, encoder_width=32, encoder_depth=1, encoder_heads=2,
                 dim=32, features=16, sigmas="8,4", sigma_q=2.0, batch=4, lr=3e-3, tick=4, workers=0,
                 progress=False, device="cpu", heldout_count=4)
DATA = "builtin:photos?count=8"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GINR model trained for 24 steps by meta, with its final token functasets."""
    out = tmp_path_factory.mktemp("ginr") / "m.safetensors"
    metrics = meta(DATA, out, steps=24, snapshot=24, **GINR_META)
    return out, metrics


def encode(model, out, **options):
    common = dict(steps=None, batch=None, count=None, split="train", device="cpu", progress=False)
    functa = dict(workers=0)
    for key in ("labels", "resolution", "embed_model", "bits", "augment"):
        if key in options:
            functa[key] = options.pop(key)
    return encode_artifact(model, data=options.pop("data", "builtin:digits?count=6"), out=out, functa=functa,
                           **{**common, **options})


def images_of(spec, model, split="train", labels=False):
    ds = open_dataset(spec, model.resolution[0], model.config["channels"], split=split, labels=labels)
    return torch.stack([ds[i][0] for i in range(len(ds))]), ds


def png(path):
    return np.asarray(Image.open(path).convert("RGB"))


# ---------------------------------------------------------------- writing token functasets

def test_meta_ginr_writes_train_and_heldout_token_functasets_of_its_final_model(trained):
    out, metrics = trained
    model = inrkit.load(out)
    for name, split, count in (("train", "train", 8), ("heldout", "heldout", 4)):
        path = out.with_suffix("") / f"functaset-{name}.safetensors"
        assert artifacts.kind_of(path) == "ginr-functaset"
        fs = inrkit.load(path)
        assert isinstance(fs, TokenFunctaset) and fs.latents.shape == (count, 8, 32)
        images, _ = images_of(f"builtin:photos?count={8 if split == 'train' else 4}", model, split)
        with torch.no_grad():
            tokens = model.encode(images)  # one forward pass, no inner loop
            recon = model(tokens, make_grid((16, 16)).view(-1, 2)).clamp(0, 1)
        assert torch.allclose(fs.latents, tokens, atol=1e-5)
        targets = ((images + 1) / 2).permute(0, 2, 3, 1).reshape(count, 256, 3)
        assert torch.allclose(fs.psnr, psnr_per_item(recon, targets), atol=1e-3)
        assert metrics[f"{name}_psnr"] == pytest.approx(fs.psnr.mean().item(), abs=1e-4)
        assert torch.equal(fs.labels, torch.full((count,), -1))
    assert metrics["train_psnr"] > 12  # 24 steps took it off mid-grey (about 9-10 dB on these photos)


def test_meta_ginr_rerun_leaves_its_up_to_date_functasets_alone(trained, capsys):
    out, _ = trained
    path = out.with_suffix("") / "functaset-train.safetensors"
    before = path.stat().st_mtime_ns, artifacts.sha256(path)
    meta(DATA, out, steps=24, snapshot=24, **GINR_META)
    assert " ".join(capsys.readouterr().err.split()).count("is up to date with") == 2
    assert (path.stat().st_mtime_ns, artifacts.sha256(path)) == before


def test_encode_ginr_model_writes_tokens_labels_and_psnr_per_item_in_one_pass(trained, tmp_path):
    model_path, _ = trained
    model = inrkit.load(model_path)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    m = encode(model_path, a, labels=True, batch=4)
    encode(model_path, b, labels=True, batch=64, embed_model=False)
    art = artifacts.read(a, kind="ginr-functaset")
    assert art.tensors["latents"].shape == (6, 8, 32) and art.tensors["psnr"].shape == (6,)
    images, ds = images_of("builtin:digits?count=6", model, labels=True)
    assert torch.equal(art.tensors["labels"], torch.tensor([int(ds[i][1]) for i in range(6)]))
    assert art.tensors["labels"].tolist() == [0, 1, 2, 3, 4, 5]  # the digits' classes, stored with --labels
    with torch.no_grad():
        tokens = model.encode(images)
    assert torch.allclose(art.tensors["latents"], tokens, atol=1e-5)
    other = artifacts.read(b)
    assert torch.allclose(other.tensors["latents"], art.tensors["latents"], atol=1e-5)  # any batch size
    assert not any(k.startswith("model.") for k in other.tensors)  # --no-embed-model
    embedded = {k[6:]: v for k, v in art.tensors.items() if k.startswith("model.")}
    assert embedded.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in embedded.items())
    assert m["count"] == 6 and m["psnr"] == pytest.approx(art.tensors["psnr"].mean().item(), abs=1e-4)
    assert art.config["model"] == model.config and "steps" not in art.config
    parents = info(a)["parents"]
    assert [(p["path"], p["matches"]) for p in parents] == [(str(model_path), True)]


# ---------------------------------------------------------------- rendering on any grid

def test_render_token_functaset_on_any_grid_through_the_registry(trained, tmp_path):
    model_path, _ = trained
    fset = model_path.with_suffix("") / "functaset-train.safetensors"
    fs = inrkit.load(fset)
    tokens = fs.latents[[2, 5]]

    def expected(shape, ranges=None):
        with torch.no_grad():
            return [to_uint8(x) for x in fs.model.render(tokens, shape, ranges).clamp(0, 1)]

    odd = render(fset, tmp_path / "odd.png", size=(9, 31), index=[2, 5], device="cpu")
    first, second = expected((9, 31))
    assert png(odd).shape == (9, 2 * 31 + 2, 3)
    assert np.array_equal(png(odd)[:, :31], first) and np.array_equal(png(odd)[:, 33:], second)
    dense = render(fset, tmp_path / "x2.png", scale=2, index=[2], device="cpu")
    assert np.array_equal(png(dense), expected((32, 32))[0])
    wide = render(fset, tmp_path / "wide.png", grid=[(-0.5, 1.5), (-0.5, 1.5)], index=[2], device="cpu")
    plain = render(fset, tmp_path / "plain.png", index=[2], device="cpu")
    assert png(wide).shape == (32, 32, 3)  # zoom-out keeps the training pixel pitch
    assert np.abs(png(wide)[8:24, 8:24].astype(int) - png(plain).astype(int)).max() <= 1  # the image sits inside
    # a set without its model renders through the model file it records, or the one named
    bare = tmp_path / "bare.safetensors"
    encode(model_path, bare, embed_model=False)
    named = render(bare, tmp_path / "named.png", index=[0], model=model_path, device="cpu")
    recorded = render(bare, tmp_path / "recorded.png", index=[0], device="cpu")
    assert np.array_equal(png(named), png(recorded))


# ---------------------------------------------------------------- the locality picture (Sec. 4.3)

def tiny_model(**kw):
    torch.manual_seed(0)
    base = dict(resolution=16, channels=3, patch=4, tokens=8, width=32, depth=1, heads=2, dim=32, features=16,
                sigmas=(8.0, 4.0), sigma_q=2.0, decoder_heads=2)
    return LocalityAwareINR(ginr_config(**{**base, **kw})).eval()


def test_locality_maps_are_the_decoders_attention_on_the_grid_in_any_chunks():
    model = tiny_model()
    tokens = torch.randn(2, 8, 32)
    shape = (12, 20)
    maps = locality_maps(model, tokens, 3, shape, chunk=2**14)
    with torch.no_grad():
        weights = model.decoder.attention(tokens, make_grid(shape).view(-1, 2)).mean(1)  # (B, N, R)
    assert torch.equal(maps["nearest"], weights.argmax(-1).view(2, *shape))
    assert torch.allclose(maps["attention"], weights[..., 3].view(2, *shape), atol=1e-6)
    chunked = locality_maps(model, tokens, 3, shape, chunk=7)
    assert torch.equal(chunked["nearest"], maps["nearest"])
    assert all(torch.allclose(chunked[k], maps[k], atol=1e-5) for k in ("attention", "spread", "zeroed"))
    total = sum(locality_maps(model, tokens, k, shape)["attention"] for k in range(8))
    assert torch.allclose(total, torch.ones(2, *shape), atol=1e-5)  # each pixel's attention over the tokens
    blank = tokens.clone()
    blank[:, 3] = 0
    with torch.no_grad():
        change = model.render(blank, shape) - model.render(tokens, shape)
    assert torch.allclose(maps["zeroed"], change, atol=1e-6) and change.abs().max() > 0


def test_locality_follows_the_tokens_when_they_are_reordered():
    model = tiny_model()
    tokens, perm = torch.randn(1, 8, 32), torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    maps = locality_maps(model, tokens, 0, (16, 16))
    moved = locality_maps(model, tokens[:, perm], 0, (16, 16))  # token j of the new order is token perm[j]
    assert torch.equal(perm[moved["nearest"]], maps["nearest"])
    assert torch.allclose(moved["spread"], maps["spread"][:, perm], atol=1e-5)


def test_spread_is_that_of_the_whole_image_under_uniform_attention():
    """Keys of zero make every token equally attended: each token's spread is the grid's own, sqrt(2 (1 - 1/n^2)
    / 12) on an n x n grid of the unit square."""
    model = tiny_model()
    with torch.no_grad():
        model.decoder.aggregate.key.weight.zero_()
        model.decoder.aggregate.key.bias.zero_()
    maps = locality_maps(model, torch.randn(2, 8, 32), 1, (40, 40))
    assert torch.allclose(maps["spread"], torch.full((2, 8), math.sqrt(2 * (1 - 1 / 1600) / 12)), atol=1e-5)
    assert torch.allclose(maps["attention"], torch.full((2, 40, 40), 1 / 8), atol=1e-6)


def test_locality_picture_colours_each_pixel_by_its_nearest_token():
    model = tiny_model()
    tokens = torch.randn(3, 8, 32)
    picture = locality_picture(model, tokens, 2, (10, 14), None, 2**14)
    assert picture.shape == (3 * 10 + 2 * 2, 4 * 14 + 3 * 4, 3)  # a row per item: 4 panels, 4 px apart
    nearest = locality_maps(model, tokens, 2, (10, 14))["nearest"]
    second = picture[12:22, 18:32]  # item 1, panel 2
    assert torch.equal(second, token_colours(8)[nearest[1]])
    heat = picture[0:10, 36:50]  # item 0, panel 3: attention to token 2, its largest white
    assert heat.max() == 1 and torch.equal(heat[..., 0], heat[..., 2])
    colours = token_colours(256)
    assert len(torch.unique(colours, dim=0)) == 256 and colours.min() >= 0 and colours.max() <= 1
    plain = tiny_model(selective=False)  # IPC's composer has no attention: the reconstruction and Fig. 5's change
    assert set(locality_maps(plain, tokens, 2, (10, 14))) == {"zeroed"}
    assert locality_picture(plain, tokens, 2, (10, 14), None, 2**14).shape == (34, 2 * 14 + 4, 3)


def test_render_locality_of_a_token_functaset(trained, tmp_path, capsys):
    model_path, _ = trained
    fset = model_path.with_suffix("") / "functaset-heldout.safetensors"
    out = render(fset, tmp_path / "loc.png", index=[0, 1], locality=5, scale=2, device="cpu")
    assert png(out).shape == (2 * 32 + 2, 4 * 32 + 3 * 4, 3)
    printed = capsys.readouterr().err
    assert "token 5: spread" in printed and "zeroing token 5" in printed


# ---------------------------------------------------------------- bad input: one sentence, nothing written

@pytest.fixture(scope="module")
def functa_run(tmp_path_factory):
    """A spatial functa model (1 step) and its training functaset."""
    out = tmp_path_factory.mktemp("functa") / "f.safetensors"
    meta("builtin:photos?count=4", out, resolution=16, width=16, depth=3, latent="4x4x4", batch=4, steps=1,
         snapshot=1, workers=0, progress=False, device="cpu", heldout_count=2)
    return out, out.with_suffix("") / "functaset-train.safetensors"


def refused(tmp_path, call, message):
    with pytest.raises(InrkitError, match=message) as err:
        call(tmp_path / "out.png")
    assert "\n" not in str(err.value) and str(err.value).endswith(".")
    assert list(tmp_path.iterdir()) == []


def test_models_and_sets_of_the_other_family_are_refused(trained, functa_run, tmp_path):
    model_path, _ = trained
    token_set = model_path.with_suffix("") / "functaset-train.safetensors"
    functa_model, functa_set = functa_run
    bare = tmp_path.parent / f"{tmp_path.name}-bare.safetensors"
    encode(model_path, bare, embed_model=False)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    refused(out_dir, lambda o: render(bare, o, model=functa_model, device="cpu"),
            "is a functa-model artifact, but a ginr-model artifact is needed")
    refused(out_dir, lambda o: render(functa_set, o, model=model_path, device="cpu"),
            "is a ginr-model artifact, but a functa-model artifact is needed")
    refused(out_dir, lambda o: render(functa_set, o, locality=0, device="cpu"),
            "--locality apply to ginr-functasets, not to a functaset artifact")
    refused(out_dir, lambda o: render(token_set, o, perturb=0, device="cpu"),
            "--perturb apply to functasets, not to a ginr-functaset artifact")
    refused(out_dir, lambda o: render(token_set, o, locality=8, device="cpu"), "--locality 8 is not a latent token")
    refused(out_dir, lambda o: render(token_set, o, index=[8], device="cpu"), "--index 8 is outside")
    with pytest.raises(InrkitError, match="is a ginr-functaset artifact, but a functaset artifact is needed"):
        read_functaset(token_set)  # train-classifier and train-diffusion read functasets through it


@pytest.mark.parametrize("options, message", [
    (dict(bits=6), "--bits applies to functa-model artifacts, not to a ginr-model artifact"),
    (dict(steps=3), "--steps applies to functa-model artifacts, not to a ginr-model artifact"),
    (dict(augment=4), "--augment applies to functa-model artifacts"),
    (dict(resolution=32), "trained on 16x16 images and encodes only that size"),
    (dict(data="no/such/folder"), "no/such/folder"),
])
def test_encode_ginr_refuses_what_it_cannot_do_and_writes_nothing(trained, tmp_path, options, message):
    model_path, _ = trained
    with pytest.raises(InrkitError, match=message):
        encode(model_path, tmp_path / "t.safetensors", **options)
    assert list(tmp_path.iterdir()) == []


def damaged_sets(art: artifacts.Artifact):
    """A token functaset altered in each way a damaged or foreign file could be."""
    wrong_shape = dict(art.tensors, latents=art.tensors["latents"][:, :7])
    short_psnr = dict(art.tensors, psnr=art.tensors["psnr"][:3])
    bigger = dict(art.config, model=dict(art.config["model"], tokens=9))
    no_model = {k: v for k, v in art.config.items() if k != "model"}
    return [
        (artifacts.Artifact(kind=art.kind, tensors=wrong_shape, config=art.config), "no latent tokens of shape"),
        (artifacts.Artifact(kind=art.kind, tensors=short_psnr, config=art.config), "psnr that do not match"),
        (artifacts.Artifact(kind=art.kind, tensors=art.tensors, config=bigger), "needs [0-9,]+ stored values"),
        (artifacts.Artifact(kind=art.kind, tensors=art.tensors, config=no_model), "GINR model config that is not"),
    ]


def test_damaged_token_functasets_are_refused_in_one_sentence(trained, tmp_path):
    model_path, _ = trained
    good = artifacts.read(model_path.with_suffix("") / "functaset-train.safetensors")
    for k, (art, message) in enumerate(damaged_sets(good)):
        path = tmp_path / f"bad{k}.safetensors"
        artifacts.save(path, art)
        out_dir = tmp_path / f"o{k}"
        out_dir.mkdir()
        refused(out_dir, lambda o, p=path: render(p, o, device="cpu"), message)
        with pytest.raises(InrkitError, match=message):
            inrkit.load(path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((model_path.with_suffix("") / "functaset-train.safetensors").read_bytes()[:-100])
    out_dir = tmp_path / "ocut"
    out_dir.mkdir()
    refused(out_dir, lambda o: render(cut, o, device="cpu"), "damaged|truncated")


# ---------------------------------------------------------------- the command line

def test_cli_encodes_a_ginr_model_and_draws_its_locality(trained, tmp_path):
    model_path, _ = trained
    fset, picture = tmp_path / "t.safetensors", tmp_path / "loc.png"
    code, err = fuzz.run_cli("encode", str(model_path), "--data", "builtin:digits?count=3", "--labels", "--workers",
                             "0", "--device", "cpu", "--out", str(fset))
    assert code == 0, err
    art = artifacts.read(fset, kind="ginr-functaset")
    assert art.tensors["latents"].shape == (3, 8, 32) and art.tensors["labels"].tolist() == [0, 1, 2]
    code, err = fuzz.run_cli("render", str(fset), "--locality", "1", "--index", "0-1", "--size", "12x20",
                             "--device", "cpu", "--out", str(picture))
    assert code == 0, err
    assert png(picture).shape == (2 * 12 + 2, 4 * 20 + 3 * 4, 3)


@pytest.mark.parametrize("args, said", [
    ("encode {model} --data builtin:digits?count=2 --bits 6", "--bits applies to functa-model artifacts"),
    ("render {tokens} --perturb 0", "--perturb apply to functasets, not to a ginr-functaset artifact"),
    ("render {tokens} --locality 99", "--locality 99 is not a latent token"),
    ("render {functaset} --locality 0", "--locality apply to ginr-functasets, not to a functaset artifact"),
    ("train-classifier --data {tokens}", "is a ginr-functaset artifact, but a functaset artifact is needed"),
    ("train-diffusion --data {tokens}", "--arch unet does not take GINR latent tokens"),
    ("classify {classifier} --data {tokens}", "is a ginr-functaset artifact, but a functaset artifact is needed"),
])
def test_cli_refuses_token_sets_where_functa_latents_are_needed(trained, functa_run, tmp_path, tmp_path_factory,
                                                               monkeypatch, args, said):
    model_path, _ = trained
    inputs = dict(model=str(model_path), tokens=str(model_path.with_suffix("") / "functaset-train.safetensors"),
                  functaset=str(functa_run[1]),
                  classifier=str(fuzz.make_artifact("classifier", tmp_path_factory.mktemp("clf"))))
    monkeypatch.chdir(tmp_path)
    code, err = fuzz.run_cli(*[a.format(**inputs) if a.startswith("{") else a for a in args.split()])
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and lines[0].startswith("inrkit: error: "), err
    assert said in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []
