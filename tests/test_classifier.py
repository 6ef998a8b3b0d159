"""Classification on functasets: the Transformer's token order, label smoothing and weight decay, 100% on a linearly
separable functaset, exact resume, augmented encoding, `classify`, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.data.augment import Augmented
from inrkit.models.classifier import FunctaClassifier, classifier_config
from inrkit.models.functa import SpatialFuncta
from inrkit.models.functa_family import MODEL_KIND
from inrkit.stages.classify import classify, confusion_matrix
from inrkit.stages.encode import functaset_artifact
from inrkit.stages.train_classifier import train_classifier
from inrkit.train.classify import ClassifierObjective, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(width=16, depth=1, heads=2, dropout=0.0, input_scale=1.0, batch=16, lr=1e-2, warmup=5, steps=150,
             ema_decay=0.5, tick=50, snapshot=75, device="cpu", progress=False)


def functa_model(tmp_path: Path, name: str = "m.safetensors", seed: int = 0) -> tuple[SpatialFuncta, Path]:
    torch.manual_seed(seed)
    model = SpatialFuncta((2, 2, 4), 8, 1, 8, 2, 10.0, "nearest", 1)
    path = tmp_path / name
    artifacts.save(path, artifacts.Artifact(kind=MODEL_KIND, tensors=model.state_dict(),
                                            config=dict(model=model.config)))
    return model, path


def separable_functaset(tmp_path: Path, name: str, model, model_path, n: int = 96, labels: bool = True,
                        seed: int = 0) -> Path:
    """Two classes whose latents differ in the sign of one coordinate (a margin of 2): linearly separable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    z = 0.3 * torch.randn(n, 2, 2, 4, generator=g)
    z[:, 0, 1, 2] = torch.where(y == 1, 1.0, -1.0) * (1 + z[:, 0, 1, 2].abs())
    path = tmp_path / name
    art = functaset_artifact(model, model_path, z, y if labels else torch.full((n,), -1), torch.zeros(n),
                             data=dict(classes=["a", "b"]), steps=3)
    artifacts.save(path, art)
    return path


# ---------------------------------------------------------------- the model


def test_token_order_matters_only_with_positional_encodings():
    z = torch.randn(3, 4, 4, 8)
    perm = torch.randperm(16)
    shuffled = z.flatten(1, 2)[:, perm].view_as(z)
    for positional, same in ((True, False), (False, True)):
        torch.manual_seed(0)
        net = FunctaClassifier(classifier_config(latent=[4, 4, 8], classes=5, width=16, depth=2, heads=4,
                                                 positional=positional)).eval()
        assert torch.allclose(net(z), net(shuffled), atol=1e-5) == same


def test_flat_functa_is_one_token_and_mlp_shapes():
    for arch in ("transformer", "mlp"):
        net = FunctaClassifier(classifier_config(latent=[1, 1, 32], classes=7, arch=arch, width=16, depth=2,
                                                 heads=4))
        assert net(torch.randn(5, 1, 1, 32)).shape == (5, 7)


def test_bad_classifier_configs():
    with pytest.raises(InrkitError, match="multiple of --heads"):
        classifier_config(latent=[4, 4, 8], classes=2, width=10, heads=4)
    with pytest.raises(InrkitError, match="unknown classifier --arch"):
        classifier_config(latent=[4, 4, 8], classes=2, arch="cnn")


def test_label_smoothing_and_weight_decay_are_applied_as_configured():
    torch.manual_seed(0)
    net = FunctaClassifier(classifier_config(latent=[2, 2, 4], classes=3, width=8, depth=1, heads=2, dropout=0.0))
    groups = net.decay_groups(0.3)
    assert [g["weight_decay"] for g in groups] == [0.3, 0.0]
    assert all(p.dim() == 2 for p in groups[0]["params"])
    assert all(p is not net.position for p in groups[0]["params"])
    z, y = torch.randn(6, 2, 2, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.AdamW(net.decay_groups(0.3), lr=0.0)  # lr 0: only the logged loss is compared
    ema = FunctaClassifier(net.config).eval()
    objective = ClassifierObjective(net=net, ema=ema, optimizer=opt,
                                    scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
                                    label_smoothing=0.2, ema_decay=0.0, snapshot_hook=lambda pos: None)
    logits = net(z).detach()
    loss = objective.step((z, y), dict(step=0))["loss"]
    target = torch.full((6, 3), 0.2 / 3) + 0.8 * F.one_hot(y, 3)  # App. B.1: 1 - l + l/n and l/n
    assert loss.item() == pytest.approx(-(target * logits.log_softmax(1)).sum(1).mean().item(), rel=1e-5)
    # Decoupled decay: a step at lr 1 with zero gradients shrinks decayed weights by (1 - lr * wd) only.
    w = net.head.weight.detach().clone()
    b = net.head.bias.detach().clone()
    opt2 = torch.optim.AdamW(net.decay_groups(0.3), lr=1.0)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt2.step()
    assert torch.allclose(net.head.weight, w * 0.7) and torch.equal(net.head.bias, b)


def test_ema_decay_warms_up_to_the_configured_value():
    from inrkit.train.classify import ema_decay_at

    assert ema_decay_at(0, 0.9999) == pytest.approx(0.1) and ema_decay_at(90, 0.9999) == pytest.approx(0.91)
    assert ema_decay_at(10**6, 0.9999) == 0.9999 and ema_decay_at(20, 0.5) == 0.5 and ema_decay_at(5, 0.5) == 0.4


def test_warmup_then_cosine():
    f = warmup_cosine(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


# ---------------------------------------------------------------- training, resume, classify


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clf")
    model, model_path = functa_model(tmp)
    train = separable_functaset(tmp, "train.safetensors", model, model_path, seed=0)
    held = separable_functaset(tmp, "held.safetensors", model, model_path, n=40, seed=1)
    out = tmp / "c.safetensors"
    metrics = train_classifier(str(train), out, eval=str(held), **SMALL)
    return tmp, train, held, out, metrics


def test_linearly_separable_functaset_reaches_100_percent(trained):
    tmp, train, held, out, metrics = trained
    assert metrics["eval_top1"] == 1.0
    art = artifacts.read(out, kind="classifier")
    assert art.metrics["eval_top1"] == 1.0 and art.config["classes"] == ["a", "b"]
    assert art.config["functa_sha256"] == artifacts.sha256(tmp / "m.safetensors")
    records = [json.loads(line) for line in (out.with_suffix("") / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [50, 100, 150] and "eval_top5" in records[-1]
    assert (out.with_suffix("") / "accuracy.png").is_file()


def test_resume_is_bit_identical(trained, tmp_path):
    _, train, held, reference, _ = trained
    out = tmp_path / "r.safetensors"
    train_classifier(str(train), out, eval=str(held), **dict(SMALL, seconds=1e-6))  # stops after one step
    train_classifier(str(train), out, eval=str(held), **SMALL)
    a, b = artifacts.read(out).tensors, artifacts.read(reference).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InrkitError, match="--label-smoothing"):
        train_classifier(str(train), out, **dict(SMALL, label_smoothing=0.0))


def test_classify_a_functaset_writes_predictions_and_confusion(trained, tmp_path):
    _, _, held, out, _ = trained
    result = classify(out, str(held), out=tmp_path / "p.csv", device="cpu", progress=False)
    assert result["top1"] == 1.0 and result["labelled"] == 40
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "item,label,prediction,top5" and len(lines) == 41
    assert all(line.split(",")[1] == line.split(",")[2] for line in lines[1:])
    assert (tmp_path / "p.png").is_file()


def test_confusion_matrix_counts():
    m = confusion_matrix(torch.tensor([0, 0, 1, -1, 2]), torch.tensor([0, 1, 1, 2, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_augmented_copies_are_deterministic_crops_with_labels():
    class Tiny:
        spec, split, resolution, channels, classes, fingerprint = "t", "train", 8, 1, ["x"], "f"

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.full((1, 8, 8), 0.5 + i * 0.1), 7

    aug = Augmented(Tiny(), 3, pad=2, flip=True, seed=0)
    assert len(aug) == 6
    items = [aug[k] for k in range(6)]
    again = Augmented(Tiny(), 3, pad=2, flip=True, seed=0)
    assert all(torch.equal(a[0], again[k][0]) for k, a in enumerate(items))
    assert all(x.shape == (1, 8, 8) and y == 7 for x, y in items)
    for k, (x, _) in enumerate(items):  # copy k shows image k // 3 and black (zero-pixel) padding, nothing else
        inside = x[x != -1]
        assert torch.allclose(inside, torch.full_like(inside, 0.5 + (k // 3) * 0.1))
    assert any((x == -1).any() for x, _ in items)  # some crop reaches into the padding
    assert len({tuple(x.flatten().tolist()) for x, _ in items[:3]}) > 1  # the copies differ


# ---------------------------------------------------------------- bad input


def cli(*args):
    return subprocess.run([sys.executable, "-m", "inrkit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def one_clean_line(r, message):
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_functaset_without_labels_is_refused(tmp_path):
    model, model_path = functa_model(tmp_path)
    unlabelled = separable_functaset(tmp_path, "u.safetensors", model, model_path, labels=False)
    out = tmp_path / "c.safetensors"
    r = cli("train-classifier", "--data", unlabelled, "--out", out, "--steps", "2", "--device", "cpu")
    one_clean_line(r, "has no class labels")
    assert not out.exists() and not out.with_suffix("").exists()


def test_classifier_on_a_functaset_of_another_model_is_refused(trained, tmp_path):
    _, _, _, clf, _ = trained
    other, other_path = functa_model(tmp_path, "other.safetensors", seed=5)
    foreign = separable_functaset(tmp_path, "f.safetensors", other, other_path)
    r = cli("classify", clf, "--data", foreign, "--out", tmp_path / "p.json", "--device", "cpu")
    one_clean_line(r, "another functa model")
    assert not (tmp_path / "p.json").exists()


def test_images_at_another_resolution_are_refused(trained, tmp_path):
    _, _, _, clf, _ = trained
    r = cli("classify", clf, "--data", "builtin:digits", "--resolution", "16", "--out", tmp_path / "p.json",
            "--device", "cpu")
    one_clean_line(r, "can encode only that resolution")
    assert not (tmp_path / "p.json").exists()


def test_encode_writes_augmented_copies_with_their_labels(tmp_path):
    from inrkit.stages.encode import encode

    _, model_path = functa_model(tmp_path)
    out = tmp_path / "aug.safetensors"
    encode(model_path, "builtin:digits", out, count=4, labels=True, augment=3, augment_flip=False, workers=0,
           device="cpu", progress=False)
    art = artifacts.read(out)
    assert art.tensors["latents"].shape == (12, 2, 2, 4)
    labels = art.tensors["labels"].tolist()
    assert labels[0::3] == labels[1::3] == labels[2::3] and min(labels) >= 0
    assert "x3 augmented" in art.config["data"]["spec"]


@pytest.mark.slow
def test_torchrun_two_processes_stay_in_sync(trained, tmp_path):
    """2 CPU processes (gloo): each takes half of every batch, gradients are averaged, and both ranks end with
    bit-identical weights."""
    import os

    _, train, held, _, _ = trained
    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\n"
        "from inrkit.core import runtime\n"
        "from inrkit.stages.train_classifier import train_classifier\n"
        f"m = train_classifier({str(train)!r}, sys.argv[1], **{dict(SMALL, steps=20, tick=10, snapshot=20)!r})\n"
        "open(sys.argv[1] + f'.rank{runtime.rank()}', 'w').write(m['parameters_sha256'])\n")
    out = tmp_path / "ddp.safetensors"
    r = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", str(script), str(out)],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    digests = [(tmp_path / f"ddp.safetensors.rank{k}").read_text() for k in (0, 1)]
    assert digests[0] == digests[1]
    assert artifacts.read(out).metrics["step"] == 20


def test_bf16_step_runs_the_transformer_in_bf16_and_keeps_fp32_weights():
    from inrkit.core.precision import resolve_precision

    def step(precision):
        torch.manual_seed(0)
        net = FunctaClassifier(classifier_config(latent=[4, 4, 8], classes=3, width=16, depth=2, heads=2,
                                                 dropout=0.0))
        seen = []
        net.blocks[0].fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        opt = torch.optim.AdamW(net.decay_groups(0.1), lr=1e-3)
        objective = ClassifierObjective(net=net, ema=FunctaClassifier(net.config).eval(), optimizer=opt,
                                        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
                                        label_smoothing=0.1, ema_decay=0.9, snapshot_hook=lambda pos: None,
                                        precision=resolve_precision(precision, "cpu"))
        z, y = torch.randn(8, 4, 4, 8, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 3
        loss = objective.step((z, y), dict(step=0))["loss"]
        return loss, seen, net
    loss32, seen32, _ = step("fp32")
    loss16, seen16, net16 = step("bf16")
    assert seen32 == [torch.float32] and seen16 == [torch.bfloat16]
    assert loss16.dtype == torch.float32 and all(p.dtype == torch.float32 for p in net16.parameters())
    assert loss16 != loss32 and abs(loss16 - loss32) < 0.05 * loss32
