"""Table 3 of the locality-aware GINR paper at CPU scale: builtin:photos 32x32, held-out PSNR against seconds.

Four models, trained AT THE SAME TIME as four processes with one torch thread each (so they share the machine's
load), each for the same wall-clock budget through the `meta` stage (`inrkit meta`):
  full     GINR, recipes/ginr.json#photos32-cpu at --lr 1e-3
  no-sta   the same without selective token aggregation (--no-selective: IPC's pattern composer)
  no-mb    the same without multi-band modulation (--no-multiband)
  functa   spatial functa 8x8x16 nearest, SIREN 64 x 4, omega_0 10, lr 1e-3, 3 inner steps (bench/functa.py's)
  functa-matched  the same with a SIREN of 384 x 5, parameters within 1% of the full GINR's
Batch 16, the first 1,000 training crops, seed 0 for all. While training, each worker keeps a copy of the model's
parameters when its training clock passes each of --marks seconds (taken at the loop's tick, one step per tick;
the copy is a state_dict clone, milliseconds). Afterwards every kept copy is evaluated on the first --heldout
held-out crops (other photos than the training crops): GINR by one encoder forward, functa by its 3 inner steps.
PSNR of the reconstruction clamped to [0, 1].

Usage: .venv/bin/python bench/ginr_table3.py [--seconds 600] [--only full,no-sta,no-mb,functa]
       (a worker: .venv/bin/python bench/ginr_table3.py --worker NAME; the main process launches four)
Writes bench/results/ginr_table3.json, docs/img/ginr-table3-photos32.png, runs under out/bench/ginr_table3/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

OUT_DIR = Path("out/bench/ginr_table3")
GINR = dict(arch="ginr", recipe="recipes/ginr.json#photos32-cpu", lr=1e-3)
CONFIGS = {
    "full": dict(GINR),
    "no-sta": dict(GINR, selective=False),
    "no-mb": dict(GINR, multiband=False),
    "functa": dict(arch="spatial-functa", latent="8x8x16", interp="nearest", width=64, depth=4, w0=10.0, lr=1e-3),
    # the same with a SIREN of 384 x 5: 472,963 parameters, within 1% of the full GINR's 469,702
    "functa-matched": dict(arch="spatial-functa", latent="8x8x16", interp="nearest", width=384, depth=5, w0=10.0,
                           lr=1e-3),
}
LABELS = {"full": "GINR (full)", "no-sta": "GINR w/o selective token aggregation",
          "no-mb": "GINR w/o multi-band modulation", "functa": "spatial functa 8x8x16 nearest",
          "functa-matched": "spatial functa 8x8x16 nearest, SIREN 384 x 5 (parameter-matched)"}
COLOURS = {"full": (214, 39, 40), "no-sta": (31, 119, 180), "no-mb": (44, 160, 44), "functa": (120, 120, 120),
           "functa-matched": (0, 0, 0)}


def worker(name: str, args) -> None:
    """Train one configuration for args.seconds through the meta stage, keeping parameter copies at the marks."""
    torch.set_num_threads(1)
    import inrkit.stages.meta as stage

    out = OUT_DIR / f"{name}.safetensors"
    shutil.rmtree(out.with_suffix(""), ignore_errors=True)  # a fresh run, not a resume
    out.unlink(missing_ok=True)
    kept_dir = OUT_DIR / f"{name}-kept"
    shutil.rmtree(kept_dir, ignore_errors=True)
    kept_dir.mkdir(parents=True)
    marks, clock, kept = sorted(args.marks), {}, []
    setup = stage._setup

    def keeping_setup(*a, **k):  # the stage's own setup, its objective's tick wrapped to keep copies
        objective, dataset = setup(*a, **k)
        tick = objective.tick

        def keeping_tick(pos, record):
            tick(pos, record)
            elapsed = time.perf_counter() - clock["start"]
            if marks and elapsed >= marks[0]:
                while marks and elapsed >= marks[0]:
                    marks.pop(0)
                path = kept_dir / f"step{pos['step']:07d}.pt"
                torch.save({k: v.detach().clone() for k, v in objective.model.state_dict().items()}, path)
                kept.append(dict(seconds=round(elapsed, 1), step=pos["step"], path=str(path)))

        objective.tick = keeping_tick
        clock["start"] = time.perf_counter()
        return objective, dataset

    stage._setup = keeping_setup
    options = dict(CONFIGS[name])
    if "recipe" in options:  # the recipe's options (as `inrkit meta --config`), ours over them
        from inrkit.core.config import load_recipe
        from inrkit.stages.configs import MetaConfig

        options = {**load_recipe(options.pop("recipe"), MetaConfig), **options}
    options.update(resolution=32, batch=16, steps=10**9, seconds=args.seconds, snapshot=10**9, tick=1,
                   count=args.train_count, functasets=False, workers=0, seed=0, device="cpu", progress=False)
    m = stage.meta("builtin:photos", out, **options)
    final = dict(seconds=round(m["run_seconds"], 1), step=m["step"], path=str(out))
    (OUT_DIR / f"{name}-kept.json").write_text(json.dumps(dict(kept=kept, final=final), indent=1))


@torch.no_grad()
def ginr_psnr(model, images: torch.Tensor) -> float:
    from inrkit.metrics.image import psnr_per_item
    from inrkit.models.metalearn import image_targets

    targets, coords = image_targets(images)
    return psnr_per_item(model(model.encode(images), coords).clamp(0, 1), targets).mean().item()


def functa_psnr(model, images: torch.Tensor) -> float:
    from inrkit.models.metalearn import encode

    return encode(model, images, 3)[1].mean().item()


def evaluate(name: str, images: torch.Tensor) -> dict:
    """Held-out PSNR of every kept copy and of the final artifact; parameters and steps."""
    from inrkit.core import artifacts
    from inrkit.models import functa_family, ginr_family

    log = json.loads((OUT_DIR / f"{name}-kept.json").read_text())
    final = log["final"]
    art = artifacts.read(final["path"])
    functa = name.startswith("functa")
    family = functa_family if functa else ginr_family
    model = family.build_model(art, final["path"]).eval()
    score = functa_psnr if functa else ginr_psnr
    curve = []
    for point in log["kept"] + [dict(final, path=None)]:
        if point["path"] is not None:
            model.load_state_dict(torch.load(point["path"]))
        else:
            model = family.build_model(art, final["path"]).eval()
        curve.append(dict(seconds=point["seconds"], step=point["step"], heldout_psnr=round(score(model, images), 2)))
    params = sum(p.numel() for p in model.parameters())
    return dict(config=name, label=LABELS[name], options=CONFIGS[name], params=params, steps=final["step"],
                train_seconds=final["seconds"], heldout_psnr=curve[-1]["heldout_psnr"], curve=curve,
                out=final["path"])


def plot(rows: list[dict], path: Path) -> None:
    """PSNR against seconds, one line per model (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for r in rows:
        xs, ys = [p["seconds"] for p in r["curve"]], [p["heldout_psnr"] for p in r["curve"]]
        ax.plot(xs, ys, marker="o", ms=3, color=[c / 255 for c in COLOURS[r["config"]]],
                label=f"{r['label']} ({r['params'] / 1000:.0f}k params)")
    ax.set_xlabel(f"training seconds ({len(rows)} runs at once, 1 thread each, shared {os.cpu_count()}-core CPU)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title("builtin:photos 32x32, held-out crops")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600.0, help="wall-clock training budget of each model")
    ap.add_argument("--marks", type=float, nargs="+", default=[30, 60, 120, 180, 240, 300, 390, 480, 540])
    ap.add_argument("--only", default=",".join(CONFIGS))
    ap.add_argument("--train-count", type=int, default=1000)
    ap.add_argument("--heldout", type=int, default=256)
    ap.add_argument("--worker", default=None, help="(internal) train this one configuration")
    ap.add_argument("--evaluate-only", action="store_true", help="evaluate the kept copies of an earlier run")
    ap.add_argument("--json", type=Path, default=Path("bench/results/ginr_table3.json"))
    ap.add_argument("--plot", type=Path, default=Path("docs/img/ginr-table3-photos32.png"))
    args = ap.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.worker:
        return worker(args.worker, args)
    names = args.only.split(",")
    started = time.time()
    load_before = os.getloadavg()
    if not args.evaluate_only:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        procs = {n: subprocess.Popen([sys.executable, __file__, "--worker", n, "--seconds", str(args.seconds),
                                      "--train-count", str(args.train_count), "--marks", *map(str, args.marks)],
                                     env=env, stdout=open(OUT_DIR / f"{n}.log", "w"), stderr=subprocess.STDOUT)
                 for n in names}
        failed = [n for n, p in procs.items() if p.wait() != 0]
        if failed:
            sys.exit(f"workers failed: {failed} (logs in {OUT_DIR})")
    load_after = os.getloadavg()
    torch.set_num_threads(1)
    from inrkit.data import open_dataset

    held = open_dataset("builtin:photos", 32, 3, split="heldout", count=args.heldout)
    images = torch.stack([held[i][0] for i in range(len(held))])
    rows = [evaluate(n, images) for n in names]
    plot(rows, args.plot)
    result = dict(rows=rows, seconds_budget=args.seconds, heldout_count=len(images), train_count=args.train_count,
                  batch=16, threads_per_process=1, concurrent_processes=len(names), started=started,
                  load_before=load_before, load_after=load_after, torch=torch.__version__,
                  machine=platform.processor() or platform.machine(), cpus=os.cpu_count())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print("| model | params | steps | training s | held-out PSNR (dB) |\n|---|---:|---:|---:|---:|")
    for r in rows:
        cells = (r["label"], f"{r['params']:,}", f"{r['steps']:,}", f"{r['train_seconds']:.0f}",
                 f"{r['heldout_psnr']:.2f}")
        print("| " + " | ".join(cells) + " |")
    print("\nPSNR against seconds:")
    for r in rows:
        print(r["config"], " ".join(f"{p['seconds']:.0f}s:{p['heldout_psnr']:.2f}" for p in r["curve"]))


if __name__ == "__main__":
    main()
