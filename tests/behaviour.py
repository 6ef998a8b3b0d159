"""Fixed-seed tiny runs of every training stage and of encode, and the sha256 of the tensors they write.

The restructure of the stages must not change what they compute: `tests/test_behaviour.py` reruns these
commands and compares against `tests/data/behaviour_hashes.json`. Regenerate that file (only after a change
that is meant to change results, and say so in the commit) with

    OMP_NUM_THREADS=1 .venv/bin/python tests/behaviour.py --write

Hashes cover tensor names, dtypes, shapes and bytes of every .safetensors file a command writes (not the
metadata, which holds paths and the command line). They depend on torch's CPU kernels, so the file records
the torch version and the test skips, saying why, under another one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

HASHES = Path(__file__).with_name("data") / "behaviour_hashes.json"

FIT = ["builtin:camera", "--size", "24", "--steps", "12", "--seed", "3", "--device", "cpu"]
META = ["--data", "builtin:photos?count=8", "--resolution", "16", "--width", "16", "--depth", "3", "--batch", "4",
        "--steps", "4", "--snapshot", "2", "--lr", "1e-3", "--heldout-count", "4", "--workers", "0", "--seed", "1",
        "--device", "cpu"]
GAN = ["--data", "builtin:digits", "--resolution", "16", "--channels", "1", "--blocks", "8x1x16,16x1x16",
       "--z-dim", "16", "--hyper-hidden", "32", "--d-channel-base", "64", "--d-channel-max", "16", "--batch", "8",
       "--kimg", "0.048", "--tick-kimg", "0.016", "--snapshot-ticks", "2", "--ema-kimg", "0.01", "--workers", "0",
       "--seed", "2", "--device", "cpu"]


def commands(root: Path) -> dict[str, list[str]]:
    """name -> inrkit argv; outputs go under `root`/name."""
    r = lambda name, file: str(root / name / file)  # noqa: E731
    return {
        "fit-siren": ["fit", *FIT, "--arch", "siren", "--depth", "3", "--width", "16",
                      "--out", r("fit-siren", "f.safetensors")],
        "fit-pe": ["fit", *FIT, "--arch", "pe", "--depth", "3", "--width", "16", "--out", r("fit-pe", "f.safetensors")],
        "fit-loe": ["fit", *FIT, "--arch", "loe", "--depth", "4", "--width", "16",
                    "--out", r("fit-loe", "f.safetensors")],
        "meta-nearest": ["meta", *META, "--latent", "4x4x4", "--interp", "nearest",
                         "--out", r("meta-nearest", "m.safetensors")],
        "meta-bilinear": ["meta", *META, "--latent", "4x4x4", "--interp", "bilinear",
                          "--out", r("meta-bilinear", "m.safetensors")],
        "meta-flat": ["meta", *META, "--arch", "functa", "--latent", "16", "--out", r("meta-flat", "m.safetensors")],
        "encode-functa": ["encode", r("meta-nearest", "m.safetensors"), "--data", "builtin:photos?count=4",
                          "--split", "heldout", "--steps", "5", "--bits", "6", "--workers", "0", "--device", "cpu",
                          "--out", r("encode-functa", "e.safetensors")],
        "train-gan-inrgan": ["train-gan", *GAN, "--out", r("train-gan-inrgan", "g.safetensors")],
        "train-gan-inr-latent": ["train-gan", *GAN, "--arch", "inr-latent",
                                 "--out", r("train-gan-inr-latent", "g.safetensors")],
        "encode-generator": ["encode", r("train-gan-inrgan", "g.safetensors"), "builtin:digits?count=2",
                             "--space", "w", "--steps", "4", "--no-perceptual", "--device", "cpu",
                             "--out", r("encode-generator", "p.safetensors")],
    }


def tensor_hash(path: Path) -> str:
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for name, t in sorted(load_file(path).items()):
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.contiguous().view(-1).view(__import__("torch").uint8).numpy().tobytes())
    return digest.hexdigest()


def run_all(root: Path) -> dict[str, dict[str, str]]:
    """Run every command in this process (one thread) and hash what each wrote."""
    import torch

    from inrkit.cli import app

    torch.set_num_threads(1)
    result = {}
    for name, argv in commands(root).items():
        try:
            app(argv + [], standalone_mode=False)
        except SystemExit as e:  # typer exits 0 on success in some paths
            if e.code:
                raise
        folder = root / name
        result[name] = {str(p.relative_to(folder)): tensor_hash(p) for p in sorted(folder.rglob("*.safetensors"))}
    return result


def recorded() -> dict:
    import torch

    return dict(torch=torch.__version__, machine=os.uname().machine, hashes={})


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        hashes = run_all(Path(tmp))
    record = dict(recorded(), hashes=hashes)
    if "--write" in sys.argv:
        HASHES.parent.mkdir(exist_ok=True)
        HASHES.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {HASHES}")
    else:
        print(json.dumps(record, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
