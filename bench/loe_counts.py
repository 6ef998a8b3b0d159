"""Parameter and MAC counts of every LoE Table 1 and Table 2 row, built from the recipes, next to the paper's.

Each row resolves its recipe variant as `inrkit fit --config` does (inrkit.core.config.resolve) and builds the
field `fit` would build (inrkit.stages.fit.config_for) for the paper's signal: the 8192 x 8192 RGB Pluto image
(supp. B) and the 300-frame 512 x 512 RGB video (supp. C); no signal is loaded and nothing is trained.
Parameters are the trainable ones (an LoE layer's grid transform is a fixed buffer), MACs the linear layers'
multiply-accumulates per sample, as the paper counts them (linear blending multiplies every corner).

Usage: .venv/bin/python bench/loe_counts.py [--json bench/results/loe_counts.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inrkit.core.config import resolve
from inrkit.fields import build_field
from inrkit.stages.configs import FitConfig
from inrkit.stages.fit import config_for

ROOT = Path(__file__).resolve().parents[1]
IMAGE, VIDEO = ((8192, 8192), 3), ((300, 512, 512), 3)  # supp. B (after resizing 8000 -> 8192), supp. C
# (recipe variant, paper row, paper parameters, paper MACs); Table 1 = Table 7's rows, Table 2 = Table 8's
TABLE1 = [
    ("pe-mlp", "PE MLP", 0.59e6, 0.57e6),
    ("pe-ce", "PE + CE", 9.37e6, 0.65e6),
    ("siren", "SIREN (not in Table 1)", None, None),
    ("interleaved", "Interleaved", 9.37e6, 0.57e6),
    ("chunked", "Chunked", 9.37e6, 0.57e6),
    ("random-affine", "Random Affine", 9.37e6, 0.57e6),
    ("constant-input", "Constant Input (no PE)", 8.92e6, 0.56e6),
    ("bilinear", "Ours Bilinear", 9.37e6, 2.28e6),
    ("", "Ours", 9.37e6, 0.57e6),
]
TABLE2 = [
    ("pe", "PE", 279e3, 0.28e6),
    ("pe-ce", "PE + CE", 17.1e6, 0.29e6),
    ("siren", "SIREN", 265e3, 0.26e6),
    ("siren-l", "SIREN-L", 4.21e6, 4.20e6),
    ("", "Ours", 16.9e6, 0.28e6),
]


def count(recipe: Path, variant: str, signal) -> tuple[int, int]:
    """(trainable parameters, MACs per sample) of the field the recipe's variant fits to `signal` (shape, C)."""
    options = resolve(FitConfig, dict(signal="unused"), f"{recipe}#{variant}")
    field = build_field(config_for(FitConfig(**options), *signal))
    return sum(p.numel() for p in field.parameters()), field.macs_per_sample()


def rows(recipe: str, table: list, signal) -> list[dict]:
    path = ROOT / "recipes" / recipe
    out = []
    for variant, name, paper_params, paper_macs in table:
        params, macs = count(path, variant, signal)
        out.append(dict(recipe=f"recipes/{recipe}#{variant}" if variant else f"recipes/{recipe}", row=name,
                        params=params, paper_params=paper_params, macs=macs, paper_macs=paper_macs))
    return out


def human(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def ratio(ours: int, paper: float | None) -> str:
    return "-" if paper is None else f"{ours / paper:.3f}"


def table(title: str, results: list[dict]) -> str:
    lines = [f"### {title}", "", "| row | recipe | params | paper | ratio | MACs/sample | paper | ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['row']} | `{r['recipe']}` | {human(r['params'])} ({r['params']:,}) | "
                     f"{human(r['paper_params'])} | {ratio(r['params'], r['paper_params'])} | {human(r['macs'])} "
                     f"({r['macs']:,}) | {human(r['paper_macs'])} | {ratio(r['macs'], r['paper_macs'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    results = {"table1": rows("loe-table1-image.json", TABLE1, IMAGE),
               "table2": rows("loe-table2-video.json", TABLE2, VIDEO)}
    print(table("Table 1 / 7: image fitting, 8192 x 8192 RGB (supp. B)", results["table1"]))
    print()
    print(table("Table 2 / 8: video fitting, 300 x 512 x 512 RGB (supp. C)", results["table2"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
