"""Bad command lines, at least five per command: a non-zero exit, one line on stderr, no traceback, no file written.

The commands run in this process through inrkit.cli.main (as the console script does; tests/fuzz.run_cli), in an
empty working folder, so a default --out that got written would show. {field}, {generator}, ... are small valid
artifacts (tests/fuzz.py); {images} a folder of two PNGs; {text} a text file; {folder} an empty folder.
"""

import fuzz
import numpy as np
import pytest
from PIL import Image

BAD = {
    "fit": [
        ("fit", "Missing argument 'signal'"),
        ("fit builtin:camera --steps 0", "--steps must be at least 1"),
        ("fit builtin:camera --steps abc", "Invalid value for '--steps'"),
        ("fit builtin:camera --arch cnn", "unknown --arch 'cnn'"),
        ("fit builtin:camera --out f.png", "should end in .safetensors"),
        ("fit builtin:camera --size 0x5", "size"),
        ("fit builtin:camera --out /proc/x/f.safetensors", "cannot be written"),
        ("fit builtin:camera --out {folder}", "should end in .safetensors"),
        ("fit builtin:camera --config nothere.json", "nothere.json"),
        ("fit builtin:camera --seconds -1", "--seconds must be positive"),
    ],
    "meta": [
        ("meta", "--data is needed"),
        ("meta --data builtin:photos --latent 3x4x5", "must be a square"),
        ("meta --data builtin:photos --latent 5x5x4", "does not divide"),
        ("meta --data builtin:photos --batch 0", "--batch must be at least 1"),
        ("meta --data builtin:photos --arch functa --latent 4x4x4", "flat latent"),
        ("meta --data builtin:photos --out m.png", "should end in .safetensors"),
        ("meta --data builtin:photos --arch gan", "unknown --arch 'gan'"),
    ],
    "train-gan": [
        ("train-gan", "--data is needed"),
        ("train-gan --data builtin:digits --channels 2", "--channels must be 1 (grey) or 3 (RGB)"),
        ("train-gan --data builtin:digits --blocks 8x1", "RESxLAYERSxWIDTH"),
        ("train-gan --data builtin:digits --batch 0", "--batch must be at least 1"),
        ("train-gan --data builtin:digits --kimg -1", "--kimg must be positive"),
        ("train-gan --data builtin:digits --resolution 32 --blocks 8x1x16,16x1x16", "must end at 32"),
        ("train-gan --data builtin:digits --modulation low", "unknown modulation 'low'"),
        ("train-gan --data builtin:digits --out /proc/x/g.safetensors", "cannot be written"),
    ],
    "encode": [
        ("encode", "Missing argument"),
        ("encode nothere.safetensors --data builtin:photos", "does not exist"),
        ("encode {field} --data builtin:photos", "field"),
        ("encode {functa-model} --data builtin:photos --bits 5", "--bits must be one of"),
        ("encode {functa-model} --data builtin:photos --steps -1", "--steps must be at least 0"),
        ("encode {functa-model} --data builtin:photos --out e.png", "should end in .safetensors"),
        ("encode {generator} builtin:digits --space q", "space"),
        ("encode {text} --data builtin:photos", "not a safetensors file"),
    ],
    "render": [
        ("render", "Missing argument"),
        ("render nothere.safetensors", "does not exist"),
        ("render {field} --size 0", "size"),
        ("render {field} --grid 1", "grid"),
        ("render {generator} --seeds 5-x", "--seeds '5-x' is not a list of seeds"),
        ("render {field} --seeds 0-3", "--seeds apply to generators"),
        ("render {generator} --psi nan", "--psi must be a finite number"),
        ("render {field} --out r.jpg", "should end in .png"),
        ("render {generator} --interpolate 1,2,3", "--interpolate needs exactly two seeds"),
        ("render {latents}", "`render` draws"),
        ("render {field} --chunk 0", "--chunk must be at least 1"),
        ("render {field} --out {folder}", "should end in .png"),  # a folder is for the frames of a video
    ],
    "fid": [
        ("fid builtin:digits", "Missing option '--data'"),
        ("fid {generator} --data builtin:digits --n 1", "--n must be at least 2"),
        ("fid {generator} --data builtin:digits --psi 2", "--psi must be in [0, 1]"),
        ("fid {generator} --data builtin:digits --upsample cubic", "unknown --upsample 'cubic'"),
        ("fid builtin:digits --data builtin:digits --scale 2", "apply only to a generator source"),
        ("fid {generator} --data {generator}", "--data must be images"),
        ("fid {generator} --data builtin:digits --compare-out c.png", "--compare-out applies only with --upsample all"),
        ("fid {generator} --data builtin:digits --stats {folder}", "is a folder"),
    ],
    "kpl": [
        ("kpl {generator}", "Missing option '--faces'"),
        ("kpl {generator} --faces builtin:faces --n-train 1", "--n-train must be at least 2"),
        ("kpl {generator} --faces builtin:faces --out k.txt", "should end in .json"),
        ("kpl nothere.safetensors --faces builtin:faces", "does not exist"),
        ("kpl {generator} --faces builtin:faces --n-test 0", "--n-test"),
        ("kpl {generator} --faces builtin:faces --out /proc/x/k.json", "cannot be written"),
    ],
    "info": [
        ("info", "Missing argument"),
        ("info nothere.safetensors", "does not exist"),
        ("info {text}", "not a safetensors file"),
        ("info {folder}", "is not a file"),
        ("info {truncated}", "truncated"),
        ("info {field} --bogus", "No such option: --bogus"),
    ],
    "data pack": [
        ("data pack builtin:digits", "Missing option"),
        ("data pack builtin:digits --out shards -r 0", "resolution must be a positive number"),
        ("data pack builtin:digits --out shards -r 8 --format gif", "gif"),
        ("data pack builtin:digits --out {text} -r 8", "is a file"),
        ("data pack nowhere/ --out shards -r 8", "nowhere"),
        ("data pack builtin:digits --out shards -r 8 --quality 0", "quality"),
        ("data pack builtin:digits --out /proc/x -r 8", "cannot be written"),
    ],
    "data show": [
        ("data show", "Missing argument"),
        ("data show builtin:digits --num 0", "--num and --columns must be at least 1"),
        ("data show builtin:digits --out g.jpg", "should end in .png"),
        ("data show nowhere/", "nowhere"),
        ("data show builtin:digits --channels 2", "channels must be 1 (grey) or 3 (RGB)"),
        ("data show builtin:nothing", "nothing"),
    ],
    "train-classifier": [
        ("train-classifier", "--data is needed"),
        ("train-classifier --data {functaset} --batch 0", "--batch must be at least 1"),
        ("train-classifier --data {functaset} --out c.png", "should end in .safetensors"),
        ("train-classifier --data {field}", "field"),
        ("train-classifier --data nothere.safetensors", "nothere"),
    ],
    "train-diffusion": [
        ("train-diffusion", "--data is needed"),
        ("train-diffusion --data {functaset} --batch 0", "--batch must be at least 1"),
        ("train-diffusion --data {functaset} --out d.png", "should end in .safetensors"),
        ("train-diffusion --data {field}", "field"),
        ("train-diffusion --data {functaset} --schedule square", "square"),
    ],
    "classify": [
        ("classify", "Missing argument"),
        ("classify {classifier}", "Missing option '--data'"),
        ("classify {classifier} --data {images} --out p.png", "should end in .json or .csv"),
        ("classify {field} --data {images}", "field"),
        ("classify {classifier} --data {images} --batch 0", "--batch must be at least 1"),
    ],
}
CASES = [(name, args, said) for name, rows in BAD.items() for args, said in rows]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    paths = {kind: str(fuzz.make_artifact(kind, folder / kind)) for kind in fuzz.all_kinds()}
    (folder / "images").mkdir()
    for k in range(2):
        Image.fromarray(np.full((8, 8, 3), 60 * k, np.uint8)).save(folder / "images" / f"{k}.png")
    (folder / "text.txt").write_text("not an artifact\n")
    (folder / "empty").mkdir()
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(open(paths["field"], "rb").read()[:-10])
    return dict(paths, images=str(folder / "images"), text=str(folder / "text.txt"), folder=str(folder / "empty"),
                truncated=str(truncated))


def files_under(folder) -> set:
    return {str(p) for p in folder.rglob("*")}


def test_every_command_has_five_bad_command_lines():
    assert {"fit", "meta", "train-gan", "encode", "render", "fid", "kpl", "info", "data pack", "data show"} <= set(BAD)
    assert min(len(rows) for rows in BAD.values()) >= 5


@pytest.mark.parametrize("name, args, said", CASES, ids=[f"{n}: {a}" for n, a, _ in CASES])
def test_a_bad_command_line_is_one_sentence_and_writes_nothing(name, args, said, inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INRKIT_FID_CACHE", str(tmp_path / "fid-cache"))
    before = files_under(tmp_path)
    code, err = fuzz.run_cli(*[a.format(**inputs) if a.startswith("{") else a for a in args.split()])
    assert code not in (0, None), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inrkit: error: ") and "Traceback" not in err, err
    assert said in lines[0], lines[0]
    assert files_under(tmp_path) == before  # nothing written, no folder made
