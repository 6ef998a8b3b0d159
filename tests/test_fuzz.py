"""Damaged artifacts of every kind load or fail with one InrkitError sentence, never another exception, quickly;
`inrkit info` and `inrkit render` never print a traceback. The fuzz itself is tests/fuzz.py; named damages below
check the sentence each one gets."""

import json
import struct
import time

import fuzz
import pytest
import torch

import inrkit
from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.models import registry

SECONDS_PER_CASE = 2.0  # loading a damaged file costs no more than loading a good one, give or take a build


@pytest.mark.parametrize("kind", fuzz.all_kinds())
def test_every_kind_has_a_small_valid_artifact_that_loads(kind, tmp_path):
    """A kind added to the registry without a maker in tests/fuzz.py fails here: the fuzz must cover it."""
    assert kind in fuzz.MAKERS, f"tests/fuzz.py has no small valid {kind} artifact to damage"
    path = fuzz.make_artifact(kind, tmp_path)
    assert fuzz.attempt(path, kind) == "loaded"
    assert fuzz.attempt_cli(path, tmp_path / "r.png") == "clean"


def _assert_clean(result: dict) -> None:
    assert result["escapes"] == [], result["escapes"]
    assert set(result["outcomes"]) <= {"loaded", "error"} and set(result["cli"]) <= {"clean"}
    assert result["outcomes"].get("error", 0) > result["cases"] // 3  # the damage is real: most files are refused
    assert result["slowest"] < SECONDS_PER_CASE


@pytest.mark.parametrize("kind", fuzz.all_kinds())
def test_fuzz(kind, tmp_path):
    _assert_clean(fuzz.campaign(kind, 60, seed=0, folder=tmp_path, cli_every=6))


@pytest.mark.slow
@pytest.mark.parametrize("kind", fuzz.all_kinds())
def test_fuzz_slow(kind, tmp_path):
    _assert_clean(fuzz.campaign(kind, 10_000, seed=1, folder=tmp_path, cli_every=50))


# ---- named damages and their sentences ----------------------------------------------------------------------


@pytest.fixture
def field(tmp_path):
    return fuzz.make_artifact("field", tmp_path)


def _rewrite(path, edit):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = edit(header, data[8 + n :])  # edits the header in place; new tensor bytes when it returns bytes
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + (body if isinstance(body, bytes) else data[8 + n :]))


def _first(header):
    return header[sorted(k for k in header if k != "__metadata__")[0]]


def _config(header, **changes):
    config = json.loads(header["__metadata__"]["config"])
    config["field"].update(changes)
    header["__metadata__"]["config"] = json.dumps(config)


HEADER_DAMAGE = [
    (lambda h, b: _first(h).update(dtype="Q7"), "has an unknown dtype 'Q7'"),
    (lambda h, b: _first(h).pop("shape"), "has no shape"),
    (lambda h, b: _first(h).update(shape=[-1]), "a shape that is not a list of sizes"),
    (lambda h, b: _first(h).update(data_offsets=[8, 4]), "data_offsets that are not two increasing"),
    (lambda h, b: _first(h).update(shape=_first(h)["shape"] + [2]), "elements do not fill its"),
    (lambda h, b: h.update(extra=dict(dtype="U8", shape=[1], data_offsets=[0, 1])), "overlaps the tensor before it"),
    (lambda h, b: b + b"\0", "1 bytes after its last tensor"),
    (lambda h, b: h["__metadata__"].update(kind=7), "metadata is not a table of strings"),
    (lambda h, b: h["__metadata__"].update(format_version="1.5"), "format_version that is not an integer"),
    (lambda h, b: h["__metadata__"].update(config="{"), "config metadata that is not JSON"),
    (lambda h, b: h["__metadata__"].update(metrics="[1, 2]"), "metrics metadata that is not a JSON object"),
    (lambda h, b: h["__metadata__"].update(kind="field\nx"), "its kind is not a name"),
    (lambda h, b: _config(h, width="8"), 'whose width is "8", not an integer from 1 to 16384'),
    (lambda h, b: _config(h, depth=True), "whose depth is true, not an integer"),
    (lambda h, b: _config(h, bogus=1), "unknown key 'bogus'"),
    (lambda h, b: _config(h, blend="cubic"), "whose blend is \"cubic\", not one of nearest, linear"),
]


@pytest.mark.parametrize("edit, message", HEADER_DAMAGE)
def test_each_damage_has_its_sentence(field, edit, message):
    _rewrite(field, edit)
    with pytest.raises(InrkitError, match=message.replace("(", r"\(").replace("[", r"\[")) as err:
        inrkit.load(field)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(field))


def test_header_json_damage_is_one_sentence(field):
    data = field.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for bad in (b'{"a": NaN}', b'{"a": 1, "a": 2}', deep, b'{"\xff": 1}', b"{}  [1]"):
        raw = bad.ljust(n)
        field.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
        with pytest.raises(InrkitError, match="header is not JSON"):
            artifacts.read(field)


def test_a_config_asking_for_terabytes_is_refused_before_anything_is_allocated(field):
    """width 2^14 and depth 1024 with 4x4 tiles asks for 2^14 * 2^14 * 16 * 1023 floats (17 TB): refused at once."""
    _rewrite(field, lambda h, b: _config(h, width=2**14, depth=1024, tile=4, loe_layers=None, affines=None))
    start = time.perf_counter()
    with pytest.raises(InrkitError, match=r"needs [0-9,]+ stored values but the file holds"):
        inrkit.load(field)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("kind", [k for k in registry.known_kinds() if k in fuzz.MAKERS])
def test_a_config_out_of_range_is_refused_in_every_family(kind, tmp_path):
    """The first integer of each family's config set to 2^40: refused in one sentence, whichever key it is."""
    path = fuzz.make_artifact(kind, tmp_path)

    def edit(header, body):
        config = json.loads(header["__metadata__"]["config"])
        section = next(v for v in config.values() if isinstance(v, dict) and any(
            isinstance(x, int) and not isinstance(x, bool) for x in v.values()))
        key = next(k for k, x in section.items() if isinstance(x, int) and not isinstance(x, bool))
        section[key] = 2**40
        header["__metadata__"]["config"] = json.dumps(config)

    _rewrite(path, edit)
    with pytest.raises(InrkitError, match="damaged or foreign"):
        inrkit.load(path)


def test_tensor_bytes_are_not_read_before_the_header_is_valid(field, monkeypatch):
    _rewrite(field, lambda h, b: _first(h).update(dtype="Q7"))
    monkeypatch.setattr(artifacts, "st_load", lambda data: pytest.fail("tensor bytes read"))
    with pytest.raises(InrkitError):
        artifacts.read(field)


def test_a_damaged_train_state_is_one_sentence_on_resume(tmp_path):
    """A state whose tensors do not fit the run (here: a parameter of the wrong shape) is refused by name."""
    from inrkit.train.checkpoint import load_state

    path = fuzz.make_artifact("train-state", tmp_path)
    model = fuzz.functa_model()
    opt = torch.optim.Adam(model.parameters())
    assert load_state(path, dict(model=model), dict(adam=opt), {}, dict(lr=1e-3))["step"] == 1
    _rewrite(path, lambda h, b: h["model.meta_lr"].update(shape=[3, 2, 2, 1]))  # its 12 values, another shape
    with pytest.raises(InrkitError, match="state.safetensors does not fit this run"):
        load_state(path, dict(model=fuzz.functa_model()), dict(adam=opt), {}, dict(lr=1e-3))
