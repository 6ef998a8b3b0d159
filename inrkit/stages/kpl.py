"""`inrkit kpl`: the Keypoints Prediction Loss of a generator (INR-GAN Sec. 4.2, Table 3, App. B.2, Algorithm 1).

1. Real faces: the first --n-test images of --faces at the generator's resolution; 68 keypoints are detected in
   each (inrkit.metrics.keypoints); images without a detected face are dropped and counted.
2. Training set: --n-train generator samples (sample k draws z from default_rng([seed, k]), as `inrkit fid` and
   `inrkit render` do), with w = G.mapping(z) (the hypernetwork's hidden representation before its output
   projection) and keypoints detected in the rendered uint8 image; samples without a face are dropped and counted.
3. The kept real faces are projected into Z and into W (inrkit.metrics.projection, StyleGAN2's projector
   without noise optimisation, App. B.2).
4. A linear map with bias is fitted per space by least squares and scored on the projected faces
   (inrkit.metrics.kpl, whose docstring states the normalisation: mean squared error per keypoint coordinate in
   [0, 1] image units, the magnitudes of Table 3); KPL(random) refits on permuted training latents.

Writes the scores and counts as JSON (--out) and, beside it, a PNG like Fig. 4: real faces with their detected
keypoints (green) and the keypoints predicted from their latents (red), one row per latent space.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from inrkit.core import artifacts
from inrkit.core.checks import require_at_least, require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_png
from inrkit.core.progress import progress_bar
from inrkit.core.runtime import pick_device, print0
from inrkit.data import open_dataset
from inrkit.metrics.keypoints import DlibKeypoints
from inrkit.metrics.kpl import kpl_scores
from inrkit.models import registry
from inrkit.models.inrgan import InrGanGenerator
from inrkit.models.inrgan_family import KIND as GENERATOR_KIND
from inrkit.models.sampling import render_w, sample_latents

DEFAULT_TRAIN = 10_000  # N_tr (App. B.2)
DEFAULT_TEST = 256  # N_ts (App. B.2)
SPACES = ("z", "w")  # G's input noise and the hypernetwork's penultimate representation (Sec. 4.2)
UNITS = "mean squared error per keypoint coordinate, (x, y) in [0, 1] image units (Table 3's scale)"
DETECTED, PREDICTED = (40, 230, 40), (255, 40, 40)

# render(start, count) -> ({space: latents (count, d)}, uint8 images (count, H, W, C)) for samples start..
Sampler = Callable[[int, int], tuple[dict[str, np.ndarray], np.ndarray]]
# embed(G, targets (N, C, R, R) in [-1, 1], space) -> (latents (N, d), reconstruction errors (N,))
Embed = Callable[[InrGanGenerator, torch.Tensor, str], tuple[np.ndarray, np.ndarray]]


@dataclass
class Keypoints:
    """Keypoints of the images where a face was found, and what was dropped."""

    keypoints: np.ndarray  # (M, 68, 2) (x, y) in [0, 1]
    found: np.ndarray  # (N,) bool over all images looked at
    latents: dict[str, np.ndarray]  # generator samples: {space: (M, d)}; real faces: {}
    images: np.ndarray | None = None  # real faces: kept uint8 (M, R, R, C)
    targets: torch.Tensor | None = None  # real faces: kept (M, C, R, R) in [-1, 1], to project

    @property
    def dropped(self) -> int:
        return int((~self.found).sum())


def generator_sampler(G: InrGanGenerator, seed: int) -> Sampler:
    """Samples of G with their z and w (psi = 1), images quantised as `inrkit fid` and `inrkit render` make them."""
    def render(start: int, count: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        z = sample_latents(G.config["z_dim"], start, count, seed)
        with torch.no_grad():
            w = G.mapping(z.to(G.w_avg.device), update_w_avg=False)
        images = render_w(G, w)  # the images `generate` makes for these seeds, without mapping z again
        return {"z": z.numpy(), "w": w.float().cpu().numpy()}, images.permute(0, 2, 3, 1).numpy()

    return render


def sample_keypoints(render: Sampler, n: int, extractor, *, batch: int = 32, progress: bool = True) -> Keypoints:
    """Keypoints of samples 0..n-1 of `render` (Algorithm 1, lines 1-3); samples without a face are dropped."""
    parts, founds, latents = [], [], {}
    with progress_bar("KPL samples", n, enabled=progress, unit="images") as update:
        for start in range(0, n, batch):
            spaces, images = render(start, min(batch, n - start))
            keypoints, found = extractor(images)
            parts.append(keypoints[found])
            founds.append(found)
            for space, x in spaces.items():
                latents.setdefault(space, []).append(np.asarray(x)[found])
            update(len(found), faces=f"{int(np.concatenate(founds).sum())}")
    return Keypoints(np.concatenate(parts), np.concatenate(founds), {k: np.concatenate(v) for k, v in latents.items()})


def real_keypoints(faces: str, resolution: int, channels: int, n: int, extractor, *, batch: int = 32,
                   progress: bool = True) -> Keypoints:
    """Keypoints of the first n images of `faces` at the generator's resolution (Algorithm 1, line 3)."""
    ds = open_dataset(faces, resolution, channels)
    if len(ds) < n:
        print0(f"{faces} holds {len(ds)} images; using all of them instead of {n}.")
        n = len(ds)
    pixels = torch.stack([ds.pixels(i)[0] for i in range(n)])  # uint8 (n, C, R, R)
    images = pixels.permute(0, 2, 3, 1).numpy()
    parts, founds = [], []
    with progress_bar("KPL real faces", n, enabled=progress, unit="images") as update:
        for start in range(0, n, batch):
            keypoints, found = extractor(images[start:start + batch])
            parts.append(keypoints[found])
            founds.append(found)
            update(len(found))
    found = np.concatenate(founds)
    targets = pixels[torch.from_numpy(found)].float() / 127.5 - 1.0  # the data layer's conversion
    return Keypoints(np.concatenate(parts), found, {}, images[found], targets)


def project_latents(G: InrGanGenerator, targets: torch.Tensor, space: str, *, steps: int, seed: int,
                    batch: int = 16, perceptual: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1, line 4: real faces -> latents of `space` by inrkit.metrics.projection (App. B.2)."""
    from inrkit.metrics.projection import project

    result = project(G, targets.to(G.w_avg.device), space=space, steps=steps, seed=seed, batch=batch,
                     perceptual=perceptual)
    return result.latents.numpy(), result.errors.numpy()


def keypoints_picture(images: np.ndarray, detected: np.ndarray, predicted: dict[str, np.ndarray], *,
                      count: int = 8, tile: int = 160) -> np.ndarray:
    """Fig. 4: the first `count` faces, one row per entry of `predicted`, detected keypoints green and predicted
    red (drawn under the green), each face enlarged to `tile` pixels, the row's name in its first tile.
    -> uint8 (H, W, 3)."""
    count = min(count, len(images))
    canvas = Image.new("RGB", (count * tile, len(predicted) * tile), "white")
    draw = ImageDraw.Draw(canvas)
    radius = max(1.0, tile / 100)
    for row, (name, points) in enumerate(predicted.items()):
        for col in range(count):
            face = images[col][..., 0] if images.shape[-1] == 1 else images[col]
            canvas.paste(Image.fromarray(face).convert("RGB").resize((tile, tile), Image.BICUBIC),
                         (col * tile, row * tile))
            for colour, kps, r in ((PREDICTED, points[col], 1.5 * radius), (DETECTED, detected[col], radius)):
                for x, y in kps * tile + np.array([col * tile, row * tile]):  # green stays visible on red
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        draw.text((4, row * tile + 2), name, fill=(255, 255, 0))
    return np.asarray(canvas)


def _check_options(n_train: int, n_test: int, projection_steps: int, seed: int, batch: int) -> None:
    require_at_least(2, n_train=n_train)
    require_at_least(1, n_test=n_test, projection_steps=projection_steps)
    require_at_least(0, seed=seed)
    require_at_least(1, batch=batch)


def _generator(generator, dev: torch.device) -> tuple[InrGanGenerator, str]:
    """(G, its label): a generator object as given, else the artifact rebuilt on `dev`."""
    given = isinstance(generator, torch.nn.Module)
    G = generator if given else registry.load(generator, GENERATOR_KIND, dev)
    if G.config["out_channels"] not in (1, 3):
        raise InrkitError(f"KPL needs RGB or grey images; this generator makes {G.config['out_channels']} "
                          "channels.")
    return G, "generator" if given else str(generator)


def kpl(
    generator,  # generator artifact path or an InrGanGenerator
    faces: str,  # real face images (folder, .zip, shards, builtin:faces): the test set X_test
    *,
    out: str | Path = Path("out/kpl.json"),  # JSON result; the Fig. 4 picture goes beside it (.png)
    n_train: int = DEFAULT_TRAIN,  # generator samples to fit on (N_tr)
    n_test: int = DEFAULT_TEST,  # real faces to score on (N_ts)
    projection_steps: int = 1000,  # optimisation steps per projection (StyleGAN2's projector default)
    seed: int = 0,  # generator samples (sample k from default_rng([seed, k])), projection, permutation
    batch: int = 32,  # images per generator batch and per extractor call
    device: str = "auto",  # auto | cpu | cuda
    extractor=None,  # keypoint extractor (inrkit.metrics.keypoints interface; default: DlibKeypoints())
    embed: Embed | None = None,  # projection (default: inrkit.metrics.projection.project)
    progress: bool = True,
) -> dict:
    """KPL(Z), KPL(W) and KPL(random) of a generator on real faces; prints a summary, writes JSON + PNG."""
    start = time.perf_counter()
    _check_options(n_train, n_test, projection_steps, seed, batch)
    out = require_writable(out, ".json")  # before hours of projection
    extractor = extractor if extractor is not None else DlibKeypoints()  # a missing dlib fails here, first
    G, label = _generator(generator, pick_device(device))
    R, C = G.config["resolution"], G.config["out_channels"]
    real = real_keypoints(str(faces), R, C, n_test, extractor, batch=batch, progress=progress)
    if len(real.keypoints) == 0:
        raise InrkitError(f"no face was found in any of the {len(real.found)} images of {faces} at {R}x{R}; "
                          "KPL needs real face images (e.g. FFHQ).")
    train = sample_keypoints(generator_sampler(G, seed), n_train, extractor, batch=batch, progress=progress)
    if len(train.keypoints) < 2:
        raise InrkitError(f"a face was found in {len(train.keypoints)} of {n_train} samples of {label}; "
                          "KPL needs a generator of faces (e.g. trained on FFHQ) and at least 2 detected faces.")
    embed = embed or (lambda G, targets, space: project_latents(G, targets, space, steps=projection_steps,
                                                                 seed=seed))
    test_latents, projection_errors = _embed_faces(G, real.targets, embed)
    scores, predicted = kpl_scores(train.latents, train.keypoints, test_latents, real.keypoints, seed=seed)
    result = dict(kpl=scores, units=UNITS, generator=label, faces=str(faces), resolution=R,
                  n_train=n_train, n_train_used=len(train.keypoints), n_train_dropped=train.dropped,
                  n_test=len(real.found), n_test_used=len(real.keypoints), n_test_dropped=real.dropped,
                  latent_dims={s: int(x.shape[1]) for s, x in train.latents.items()},
                  projection_steps=projection_steps, projection_pixel_mse=projection_errors,
                  extractor=getattr(extractor, "name", type(extractor).__name__), seed=seed,
                  command=artifacts.command_line(), seconds=round(time.perf_counter() - start, 2))
    _write(out, result, real, predicted)
    return result


def _embed_faces(G: InrGanGenerator, targets: torch.Tensor, embed: Embed) -> tuple[dict, dict]:
    """Algorithm 1, line 4 in each space: ({space: latents (M, d)}, {space: mean projection pixel MSE})."""
    latents, errors = {}, {}
    for space in SPACES:
        latents[space], e = embed(G, targets, space)
        errors[space] = float(np.mean(e))
    return latents, errors


def _write(out: Path, result: dict, real: Keypoints, predicted: dict[str, np.ndarray]) -> None:
    """The JSON result, the Fig. 4 picture beside it, and the summary lines."""
    artifacts.atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())
    picture = save_png(out.with_suffix(".png"), keypoints_picture(
        real.images, real.keypoints, {k: predicted[k] for k in ("z", "w", "random_w")}))
    _summary(result, out, picture)


def _summary(result: dict, out: Path, picture: Path) -> None:
    s, dims = result["kpl"], result["latent_dims"]
    if result["n_train_used"] <= max(dims.values()):
        print0(f"warning: {result['n_train_used']} training samples for up to {max(dims.values())} latent "
               "dimensions: the fit is underdetermined; use a larger --n-train.")
    print0(f"KPL(Z) {s['z']:.3g}  KPL(W) {s['w']:.3g}  KPL(random) {s['random_z']:.3g} (Z), "
           f"{s['random_w']:.3g} (W): {UNITS}")
    print0(f"N_tr {result['n_train_used']} of {result['n_train']} samples ({result['n_train_dropped']} without a "
           f"face dropped); N_ts {result['n_test_used']} of {result['n_test']} real faces "
           f"({result['n_test_dropped']} dropped); {result['seconds']:.0f} s; wrote {out} and {picture}")
