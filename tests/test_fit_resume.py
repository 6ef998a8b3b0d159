"""`inrkit fit` runs on the one training loop: a stopped fit resumes bit-identically, changed options are
refused, and random-pixel fits draw the same pixels after a resume."""

import pytest
import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.stages.fit import fit

TINY = dict(arch="loe", width=8, depth=3, size=(16, 16), steps=12, tick=3, snapshot=4, device="cpu",
            progress=False)


@pytest.mark.parametrize("batch_pixels", [0, 40])
def test_stopped_fit_resumes_to_the_same_field(batch_pixels, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    fit("builtin:camera", a, batch_pixels=batch_pixels, **TINY)
    first = fit("builtin:camera", b, batch_pixels=batch_pixels, seconds=1e-6, **TINY)  # stops after one step
    assert first["steps"] == 1
    fit("builtin:camera", b, batch_pixels=batch_pixels, **TINY)
    ta, tb = artifacts.read(a).tensors, artifacts.read(b).tensors
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert artifacts.read(b).metrics["steps"] == 12


def test_changed_option_is_refused_and_a_finished_fit_is_not_retrained(tmp_path):
    out = tmp_path / "f.safetensors"
    fit("builtin:camera", out, **TINY)
    before = artifacts.sha256(out)
    fit("builtin:camera", out, **TINY)  # finished: resumes at the end, trains nothing
    assert artifacts.read(out).metrics["steps"] == 12
    with pytest.raises(InrkitError, match="--width"):
        fit("builtin:camera", out, **dict(TINY, width=16))
    assert artifacts.sha256(out) == before
