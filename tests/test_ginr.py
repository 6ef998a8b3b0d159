"""Locality-aware generalizable INR (inrkit.models.ginr): patching of sizes that do not divide, the attention of
selective token aggregation, invariance to the tokens' order, the frequency features' bandwidth, what each Table 3
ablation removes, evaluation at any coordinates, and a tiny encoder + decoder that learns a few images."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import inrkit
from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.fields.grid import make_grid
from inrkit.metrics.image import psnr_per_item
from inrkit.models import registry
from inrkit.models.ginr import (
    FrequencyFeatures,
    LocalityAwareDecoder,
    LocalityAwareINR,
    TokenAttention,
    TransformerEncoder,
    ginr_config,
    log_frequencies,
    patchify,
)
from inrkit.stages.meta import meta
from inrkit.train.ginr import subsample


def tiny_config(**kw):
    base = dict(resolution=16, channels=3, patch=4, tokens=8, width=32, depth=1, heads=2, dim=32, features=16,
                sigmas=(8.0, 4.0), sigma_q=2.0, decoder_heads=2)
    return ginr_config(**{**base, **kw})


def tiny_decoder(**kw):
    torch.manual_seed(0)
    base = dict(width=16, features=8, sigmas=(8.0, 4.0, 2.0), sigma_q=2.0, heads=2, tokens=5)
    return LocalityAwareDecoder(**{**base, **kw})


# ---------------------------------------------------------------- the encoder

def test_patchify_pads_a_size_the_patch_does_not_divide_evenly_and_with_zeros():
    images = torch.rand(2, 3, 178, 178) + 1  # no zero pixel, so the zeros are the padding
    patches = patchify(images, 9)
    assert patches.shape == (2, 400, 3 * 81)  # ceil(178 / 9)^2 = 20 x 20
    grid = patches.view(2, 20, 20, 3, 9, 9)  # (B, rows, cols, C, p, p)
    first, last = grid[0, 0, 0, 0], grid[0, -1, -1, 0]
    assert (first[0] == 0).all() and (first[:, 0] == 0).all() and (first[1:, 1:] > 0).all()  # 1 px before
    assert (last[-1] == 0).all() and (last[:, -1] == 0).all() and (last[:-1, :-1] > 0).all()  # 1 px after
    assert torch.equal(first[1, 1], images[0, 0, 0, 0])  # pixel (0, 0) sits right after the padding
    # an uneven padding (3 px on 13) puts the smaller half first; the patches hold every pixel exactly once
    odd = torch.rand(1, 2, 20, 13) + 1
    tiles = patchify(odd, 4)
    assert tiles.shape == (1, 5 * 4, 2 * 16)
    assert torch.isclose(tiles.sum(), odd.sum()) and (tiles > 0).sum() == odd.numel()
    assert (tiles.view(1, 5, 4, 2, 4, 4)[0, 0, 0, :, :, 0] == 0).all()  # 1 column before ...
    assert (tiles.view(1, 5, 4, 2, 4, 4)[0, 0, -1, :, :, -2:] == 0).all()  # ... and 2 after


def test_encoder_gives_r_tokens_of_decoder_width_for_any_image_size():
    torch.manual_seed(0)
    encoder = TransformerEncoder((178, 178), channels=3, patch=9, tokens=6, width=16, depth=1, heads=2,
                                 latent_dim=12)
    assert encoder.position.shape == (400, 16)
    assert encoder(torch.rand(2, 3, 178, 178)).shape == (2, 6, 12)
    wide = TransformerEncoder((10, 23), channels=1, patch=4, tokens=3, width=8, depth=1, heads=2, latent_dim=5)
    assert wide.position.shape == (3 * 6, 8) and wide(torch.rand(1, 1, 10, 23)).shape == (1, 3, 5)


def test_latents_are_the_outputs_at_the_learned_tokens():
    """Self-attention is permutation-equivariant (Sec. 3.2): reordering the learned tokens reorders the latents."""
    torch.manual_seed(0)
    encoder = TransformerEncoder((8, 8), patch=4, tokens=5, width=8, depth=2, heads=2, latent_dim=6)
    images = torch.rand(2, 3, 8, 8)
    before = encoder(images)
    order = torch.tensor([4, 2, 0, 1, 3])
    with torch.no_grad():
        encoder.latent_tokens.copy_(encoder.latent_tokens[order])
    assert torch.allclose(encoder(images), before[:, order], atol=1e-5)
    assert not torch.allclose(before[:, order], before, atol=1e-3)


def test_encoder_refuses_a_patch_larger_than_the_image_and_images_of_another_size():
    with pytest.raises(InrkitError, match="cannot tile"):
        TransformerEncoder((8, 8), patch=9, tokens=2, width=8, depth=1, heads=2, latent_dim=4)
    encoder = TransformerEncoder((8, 8), patch=4, tokens=2, width=8, depth=1, heads=2, latent_dim=4)
    with pytest.raises(InrkitError, match="takes 8x8 images"):
        encoder(torch.rand(1, 3, 9, 8))


# ---------------------------------------------------------------- the decoder

def test_attention_weights_sum_to_one_over_tokens_and_make_the_modulation():
    torch.manual_seed(0)
    attention = TokenAttention(width=12, heads=3)
    queries, tokens = torch.randn(2, 7, 12), torch.randn(2, 5, 12)
    weights = attention.weights(queries, tokens)
    assert weights.shape == (2, 3, 7, 5) and (weights > 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 7), atol=1e-6)
    values = attention.split(attention.value(tokens))  # (B, heads, R, d / heads)
    direct = attention.out((weights @ values).transpose(1, 2).flatten(-2))  # Eq. 5 written out
    assert torch.allclose(attention(queries, tokens), direct, atol=1e-5)
    decoder = tiny_decoder()
    coords = torch.rand(9, 2)
    assert torch.allclose(decoder.attention(torch.randn(3, 5, 16), coords).sum(-1), torch.ones(3, 2, 9), atol=1e-6)


def reference_decoder(decoder: LocalityAwareDecoder, tokens: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Eqs. 2-9 written out one point and one level at a time with the decoder's own parameters."""
    def h_f(features, v):  # Eqs. 2-3
        u = 2 * v - 1
        phase = torch.stack([math.pi * w * u[i] for i in range(len(u)) for w in features.frequencies])
        return torch.relu(features.linear(torch.cat([torch.cos(phase), torch.sin(phase)])))

    def aggregate(q, z):  # Eq. 5, or IPC's composer
        a = decoder.aggregate
        if not isinstance(a, TokenAttention):
            return (z @ q) @ a.factor + a.bias
        heads = []
        for qh, kh, vh in zip(a.query(q).chunk(a.heads), a.key(z).chunk(a.heads, -1), a.value(z).chunk(a.heads, -1),
                              strict=True):
            heads.append(torch.softmax(kh @ qh / math.sqrt(len(qh)), 0) @ vh)
        return a.out(torch.cat(heads))

    out = torch.empty(tokens.shape[0], len(coords), decoder.head.out_features)
    for b in range(tokens.shape[0]):
        for n, v in enumerate(coords):
            m = aggregate(h_f(decoder.query, v), tokens[b])  # Eqs. 4-5
            levels = [torch.relu(h_f(band.frequency, v) + band.modulation(m)) for band in decoder.bands]  # 6-7
            hidden = [levels[0]]  # h^(1) = m^(1)
            for l, layer in enumerate(decoder.layers, start=1):  # Eq. 8, or the plain stack
                hidden.append(torch.relu(layer(hidden[-1] + (levels[l] if decoder.multiband else 0))))
            skips = [f(h) for f, h in zip(decoder.skips, hidden[:-1], strict=True)] if decoder.multiband else []
            out[b, n] = 0.5 + sum(skips) + decoder.head(hidden[-1])  # Eq. 9
    return out


@pytest.mark.parametrize("ablation", [{}, {"selective": False}, {"multiband": False}, {"sigmas": (4.0,)}])
def test_decoder_matches_the_equations_written_out(ablation):
    decoder = tiny_decoder(**ablation)
    tokens, coords = torch.randn(2, 5, 16), torch.rand(6, 2)
    with torch.no_grad():
        assert torch.allclose(decoder(tokens, coords), reference_decoder(decoder, tokens, coords), atol=1e-5)


def test_decoder_is_invariant_to_the_order_of_the_tokens_and_the_composer_is_not():
    tokens, coords = torch.randn(2, 5, 16), torch.rand(30, 2)
    order = torch.tensor([3, 0, 4, 1, 2])
    for multiband in (True, False):
        decoder = tiny_decoder(multiband=multiband)
        assert torch.allclose(decoder(tokens, coords), decoder(tokens[:, order], coords), atol=1e-5)
    composer = tiny_decoder(selective=False)  # IPC: token r always meets the r-th row of the shared factor
    assert not torch.allclose(composer(tokens, coords), composer(tokens[:, order], coords), atol=1e-3)


def test_decoder_output_depends_on_every_token_only_through_selective_attention():
    decoder = tiny_decoder()
    tokens = torch.randn(1, 5, 16)
    coords = make_grid((8, 8)).view(-1, 2)
    changed = tokens.clone()
    changed[0, 2] += 1.0
    assert not torch.allclose(decoder(tokens, coords), decoder(changed, coords), atol=1e-4)
    # two items in one batch do not see each other's tokens
    pair = decoder(torch.cat([tokens, changed]), coords)
    assert torch.allclose(pair[0], decoder(tokens, coords)[0], atol=1e-5)


def test_frequency_features_span_the_configured_bandwidth():
    freqs = log_frequencies(128.0, 64)
    assert freqs[0] == 1 and math.isclose(freqs[-1].item(), 128.0, rel_tol=1e-5)
    assert torch.allclose(torch.diff(torch.log(freqs)), torch.full((63,), math.log(128.0) / 63), atol=1e-5)
    features = FrequencyFeatures(in_dim=2, features=4 * 5, width=4, sigma=16.0)  # 5 frequencies per axis
    m = 256
    line = torch.stack([torch.full((m,), 0.5), torch.arange(m) / m], dim=-1)  # along x at y = 0.5
    gamma = features.gamma(line)  # (m, 20): cos of (y, w_0..4), (x, w_0..4), then the sines
    spectrum = torch.fft.rfft(gamma, dim=0).abs()
    assert spectrum[:, 5].argmax() == 1 and spectrum[:, 9].argmax() == 16  # cos x at w = 1 and w = sigma
    assert spectrum[:, 19].argmax() == 16  # sin x at sigma: sigma cycles over [0, 1], the highest
    assert torch.allclose(gamma[:, :5], gamma[:1, :5].expand(m, -1))  # the y features do not move along x
    with pytest.raises(InrkitError, match="multiple of 2 x 2"):
        FrequencyFeatures(in_dim=2, features=6, width=4, sigma=8.0)


def names(module):
    return {name for name, _ in module.named_parameters()}


def test_each_ablation_removes_exactly_the_component_it_names():
    full = names(tiny_decoder())  # L = 3
    no_sta = names(tiny_decoder(selective=False))
    no_mfm = names(tiny_decoder(multiband=False))
    attention = {f"aggregate.{p}.{w}" for p in ("query", "key", "value", "out") for w in ("weight", "bias")}
    assert full - no_sta == attention and no_sta - full == {"aggregate.factor", "aggregate.bias"}
    bands = {f"bands.{i}.{p}.{w}" for i in (1, 2) for p in ("frequency.linear", "modulation") for w in ("weight",
                                                                                                      "bias")}
    skips = {f"skips.{i}.{w}" for i in (0, 1) for w in ("weight", "bias")}
    assert full - no_mfm == bands | skips and not no_mfm - full
    assert {"layers.0.weight", "layers.1.weight", "bands.0.modulation.weight", "head.weight"} <= no_mfm
    model = LocalityAwareINR(tiny_config(selective=False, multiband=False))
    assert names(model.encoder) == names(LocalityAwareINR(tiny_config()).encoder)  # the encoder never changes


def test_decoder_evaluates_at_any_coordinates_shared_or_per_item_and_in_chunks():
    model = LocalityAwareINR(tiny_config())
    tokens = model.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    coords = torch.rand(50, 2) * 1.6 - 0.3  # off the grid, past the image (zoom-out)
    shared = model(tokens, coords)
    per_item = model(tokens, coords.expand(2, -1, -1))
    assert shared.shape == (2, 50, 3) and torch.allclose(shared, per_item, atol=1e-6)
    assert torch.allclose(model(tokens[1:], coords[10:13]), shared[1:, 10:13], atol=1e-6)  # points independent
    dense = model.render(tokens, (37, 23), chunk=100)  # 851 points in 9 chunks
    whole = model(tokens, make_grid((37, 23)).view(-1, 2)).view(2, 37, 23, 3)
    assert dense.shape == (2, 37, 23, 3) and torch.allclose(dense, whole, atol=1e-5)


def smooth_images(count: int, size: int) -> torch.Tensor:
    """A few smooth colour images in [-1, 1] (a random 4 x 4 field upsampled), deterministic."""
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(count, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.mark.parametrize("ablation", [{}, {"selective": False}, {"multiband": False}])
def test_tiny_encoder_and_decoder_learn_a_few_images(ablation):
    torch.manual_seed(0)
    model = LocalityAwareINR(tiny_config(**ablation))
    images = smooth_images(4, 16)
    targets = ((images + 1) / 2).permute(0, 2, 3, 1).reshape(4, 256, 3)
    coords = make_grid((16, 16)).view(-1, 2)

    def psnr():
        with torch.no_grad():
            return psnr_per_item(model(model.encode(images), coords).clamp(0, 1), targets).mean().item()

    before = psnr()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(150):
        loss = F.mse_loss(model(model.encode(images), coords), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = psnr()
    assert after > before + 8, (before, after)


# ---------------------------------------------------------------- inrkit meta --arch ginr

GINR_META = dict(arch="ginr", resolution=16, patch=4, tokens=8, encoder_width=32, encoder_depth=1, encoder_heads=2,
                 dim=32, features=16, sigmas="8,4", sigma_q=2.0, batch=4, lr=1e-3, tick=1, workers=0,
                 progress=False, functasets=False, device="cpu")
DATA = "builtin:photos?count=8"


def stats(out):
    lines = (out.with_suffix("") / "stats.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_meta_ginr_trains_a_ginr_model_through_the_registry_and_resumes_bit_identically(tmp_path):
    straight, split = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    options = dict(GINR_META, fraction=0.5)  # the pixel subsets resume too
    done = meta(DATA, straight, steps=8, snapshot=4, **options)
    meta(DATA, split, steps=4, snapshot=4, **options)
    again = meta(DATA, split, steps=8, snapshot=4, **options)  # resumes at step 4
    assert again["run_steps"] == 4 and again["parameters_sha256"] == done["parameters_sha256"]
    psnr = [r["psnr"] for r in stats(straight)]
    assert len(psnr) == 8 and psnr[-1] > psnr[0] + 1, psnr
    assert artifacts.kind_of(straight) == "ginr-model"
    model = inrkit.load(straight)
    assert isinstance(model, LocalityAwareINR) and not model.training
    tokens = model.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    family = registry.family_of("ginr-model")
    assert family.render_codes(model, tokens, (9, 31)).shape == (2, 9, 31, 3)
    assert (straight.with_suffix("") / "reconstructions-0000008.png").is_file()


def test_meta_ginr_supervises_a_random_fraction_of_pixels(tmp_path):
    full, part = tmp_path / "full.safetensors", tmp_path / "part.safetensors"
    a = meta(DATA, full, steps=2, snapshot=2, **GINR_META)
    b = meta(DATA, part, steps=2, snapshot=2, fraction=0.25, **GINR_META)
    c = meta(DATA, tmp_path / "again.safetensors", steps=2, snapshot=2, fraction=0.25, **GINR_META)
    assert a["parameters_sha256"] != b["parameters_sha256"] == c["parameters_sha256"]
    coords, targets = make_grid((4, 4)).view(16, 2), torch.rand(3, 16, 3)
    picked, values = subsample(coords, targets, 0.25, [5, 6, 5])
    assert picked.shape == (3, 4, 2) and values.shape == (3, 4, 3)
    assert torch.equal(picked[0], picked[2]) and not torch.equal(picked[0], picked[1])
    index = (picked[1] * 4 - 0.5).round().long()  # each picked target is the target at its coordinate
    assert torch.equal(values[1], targets[1, index[:, 0] * 4 + index[:, 1]])


@pytest.mark.parametrize("options, message", [
    (dict(patch=17), "cannot tile 16x16"), (dict(fraction=0.0), "--fraction must be in"),
    (dict(sigmas="8,x"), "not a list of bandwidths"), (dict(encoder_heads=3), "multiple of its 3 heads"),
])
def test_meta_ginr_refuses_sizes_that_cannot_work_and_writes_nothing(tmp_path, options, message):
    out = tmp_path / "m.safetensors"
    with pytest.raises(InrkitError, match=message):
        meta(DATA, out, steps=1, **{**GINR_META, **options})
    assert not out.exists() and not out.with_suffix("").exists()


@pytest.mark.slow
def test_meta_ginr_under_torchrun_keeps_ranks_identical_and_matches_one_process(tmp_path):
    """2 CPU processes (gloo) of batch 2 each: the same parameters on both ranks, close to one process of 4."""
    script, out, single = tmp_path / "ddp.py", tmp_path / "ddp.safetensors", tmp_path / "single.safetensors"
    script.write_text("import sys\nfrom inrkit.core import runtime\nfrom inrkit.stages.meta import meta\n"
                      f"m = meta({DATA!r}, sys.argv[1], steps=3, snapshot=3, **{GINR_META!r})\n"
                      "open(sys.argv[1] + f'.rank{runtime.rank()}', 'w').write(m['parameters_sha256'])\n")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--nproc_per_node", "2", str(script), str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ddp.safetensors.rank0").read_text() == (tmp_path / "ddp.safetensors.rank1").read_text()
    meta(DATA, single, steps=3, snapshot=3, **GINR_META)
    two, one = artifacts.read(out).tensors, artifacts.read(single).tensors
    assert all(torch.allclose(two[k], one[k], rtol=1e-4, atol=1e-6) for k in one)
