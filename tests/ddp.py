"""A 2-process CPU (gloo) `torchrun` of train_gan for the sync tests: each rank records the sha256 of the modules
the trainer checks in sync (G, D and EMA at the last check) next to the artifact."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_gan_on_two_ranks(tmp_path: Path, data: str, **kwargs) -> tuple[Path, list[str]]:
    """Run train_gan(data, OUT, **kwargs) under torchrun --nproc_per_node 2; return OUT and each rank's digests."""
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys\n"
        "from inrkit.core import runtime\n"
        "from inrkit.stages import train_gan as t\n"
        "out = sys.argv[1]\n"
        "models = []\n"
        "orig = runtime.check_in_sync\n"
        "def keep(module):\n"
        "    models.append(module)\n"
        "    orig(module)\n"
        "runtime.check_in_sync = keep\n"
        f"t.train_gan({data!r}, out, **{kwargs!r})\n"
        "text = ' '.join(runtime.parameters_sha256(m) for m in models[-3:])\n"
        "open(out + f'.rank{runtime.rank()}', 'w').write(text)\n")
    out = tmp_path / "ddp.safetensors"
    r = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", str(script), str(out)],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, [(tmp_path / f"ddp.safetensors.rank{k}").read_text() for k in (0, 1)]
