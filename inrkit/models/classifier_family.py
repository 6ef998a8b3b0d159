"""The classifier family (kind `classifier`): a Transformer or MLP on the latents of one functa model.

A classifier artifact holds the classifier's (EMA) weights under `classifier.` and, embedded under `functa.`, the
functa model whose latents it reads, so `inrkit classify` can encode images with no other file; its config names
that model's config and sha256 (a functaset of another model is refused) and the class names. Registered in
inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.models.classifier import FunctaClassifier
from inrkit.models.functa import SpatialFuncta, build_functa
from inrkit.models.validate import check_classifier_artifact

KIND = "classifier"
CLASSIFIER_PREFIX = "classifier."
FUNCTA_PREFIX = "functa."


@dataclass
class Classifier:
    """A classifier rebuilt: the network (eval mode), its functa model (eval mode) and what it was trained on."""

    net: FunctaClassifier
    functa: SpatialFuncta
    functa_sha256: str
    classes: list[str] = field(default_factory=list)


def _part(art: artifacts.Artifact, prefix: str) -> artifacts.Artifact:
    tensors = {k[len(prefix):]: v for k, v in art.tensors.items() if k.startswith(prefix)}
    return artifacts.Artifact(kind=art.kind, tensors=tensors, config=art.config)


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> Classifier:
    """The classifier and its embedded functa model, in eval mode on `device`."""
    for key in ("classifier", "functa", "functa_sha256"):
        if key not in art.config:
            raise InrkitError(f"{path} has no {key} config in its metadata; the file is damaged or foreign.")
    check_classifier_artifact(art.config, art.tensors, path)  # before allocating
    net = artifacts.load_state(FunctaClassifier(art.config["classifier"]), _part(art, CLASSIFIER_PREFIX), path)
    functa = artifacts.load_state(build_functa(art.config["functa"]), _part(art, FUNCTA_PREFIX), path)
    return Classifier(net=net.to(device).eval(), functa=functa.to(device).eval(),
                      functa_sha256=art.config["functa_sha256"], classes=list(art.config.get("classes", [])))


def classifier_artifact(net: FunctaClassifier, functa: SpatialFuncta, functa_sha256: str, *, classes: list[str],
                        parents: dict, options: dict, metrics: dict) -> artifacts.Artifact:
    tensors = {CLASSIFIER_PREFIX + k: v for k, v in net.state_dict().items()}
    tensors.update({FUNCTA_PREFIX + k: v for k, v in functa.state_dict().items()})
    config = dict(classifier=net.config, functa=functa.config, functa_sha256=functa_sha256, classes=classes)
    return artifacts.Artifact(kind=KIND, tensors=tensors, config=config, parents=parents, options=options,
                              metrics=metrics)
