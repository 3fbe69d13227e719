"""A small CNN that names which COMMON_VOCAB object a crop shows; evaluation's identity judge.

It learns from the data builder's own renders (``render_batch``) of single objects in every style,
on solid, gradient and scene backgrounds, at every size, position and jitter, cropped the way the
scorers crop (a square around the cell the scene spec gives the object), with blur and noise so it
also reads soft generated images. Its accuracy is measured on renders from a separate random
stream that training never draws. Weights ship in ``weights/`` (2.4 MB fp16); retrain with
``python -m zaoxiang.training.eval.train_classifier``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from zaoxiang.errors import ZaoxiangError
from zaoxiang.training.data.lexicon import BACKGROUND_SCENES, COLOURS
from zaoxiang.training.data.pack import SpritePack
from zaoxiang.training.data.render import render_batch
from zaoxiang.training.data.scenes import Background, SceneObject, SceneSpec
from zaoxiang.training.eval.geometry import Frac, crop, object_places, square_around

INPUT_SIZE = 40
RENDER_SIZE = 96  # training scenes are rendered this big, then cropped to INPUT_SIZE
WEIGHTS_NAME = "classifier.safetensors"
_POSITIONS = ("center", "left", "right", "top", "bottom")
_SIZES = ("small", "medium", "large")


class ClassifierMissing(ZaoxiangError):
    code = "eval_classifier_missing"


def default_weights_path() -> Path:
    return Path(__file__).resolve().parent / "weights" / WEIGHTS_NAME


class ObjectNet(nn.Module):
    """Four conv stages (40→20→10→5) and a linear head: 1.24M parameters at width 32."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        chans = (width, width * 2, width * 4, width * 8)
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(chans):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i > 0:
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 3, S, S) in [0, 1]
        h = self.features(x * 2 - 1)  # (N, C, s, s)
        return self.head(h.mean(dim=(2, 3)))  # (N, K)


@dataclass
class ObjectClassifier:
    """The trained net plus its class list and measured held-out accuracy."""

    net: ObjectNet
    classes: tuple[str, ...]
    heldout_accuracy: float | None = None

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.net.eval()

    @torch.no_grad()
    def logits(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, K) logits for (N, 3, INPUT_SIZE, INPUT_SIZE) crops in [0, 1]."""
        if crops.shape[0] == 0:
            return crops.new_zeros(0, len(self.classes))
        dev = next(self.net.parameters()).device
        return torch.cat([self.net(chunk.to(dev).float()).cpu() for chunk in crops.split(512)])

    def predict(self, crops: torch.Tensor) -> list[str]:
        return [self.classes[i] for i in self.logits(crops).argmax(dim=1).tolist()]

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
                 for k, v in self.net.state_dict().items()}
        meta = {"classes": json.dumps(list(self.classes)), "input_size": str(INPUT_SIZE),
                "heldout_accuracy": json.dumps(self.heldout_accuracy)}
        save_file(state, path, metadata=meta)

    @classmethod
    def load(cls, path: Path | str | None = None) -> ObjectClassifier:
        path = Path(path) if path is not None else default_weights_path()
        if not path.is_file():
            raise ClassifierMissing(
                f"evaluation classifier weights not found at {path}; "
                "train them with `python -m zaoxiang.training.eval.train_classifier`", field="classifier")
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        classes = tuple(json.loads(meta["classes"]))
        net = ObjectNet(len(classes))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()})
        return cls(net, classes, json.loads(meta.get("heldout_accuracy", "null")))


# -- training data -----------------------------------------------------------------------------


def _random_background(rng: random.Random) -> Background:
    roll = rng.random()
    if roll < 0.55:
        return Background(kind="solid", colours=(rng.choice(COLOURS).id,))
    if roll < 0.75:
        a, b = rng.sample(COLOURS, 2)
        return Background(kind="gradient", colours=(a.id, b.id))
    return Background(kind="scene", scene=rng.choice(BACKGROUND_SCENES).id, seed=rng.randrange(2**31))


def _random_spec(rng: random.Random, pack: SpritePack, classes: tuple[str, ...]) -> SceneSpec:
    cid = rng.choice(classes)
    style = rng.choice(pack.styles_for(cid))
    obj = SceneObject(concept_id=cid, position=rng.choice(_POSITIONS), size=rng.choice(_SIZES),
                      jitter=(rng.uniform(-1, 1), rng.uniform(-1, 1)))
    return SceneSpec(kind="single", style=style, background=_random_background(rng), objects=(obj,))


def _soften(crops: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur part of the batch and add noise: generated images are softer than renders."""
    n = crops.shape[0]
    blur = F.avg_pool2d(F.pad(crops, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # (N, 3, S, S)
    dev = crops.device
    pick = (torch.rand(n, 1, 1, 1, generator=gen, device=dev) < 0.4).float()
    out = crops * (1 - pick) + blur * pick
    gain = 1 + 0.15 * (torch.rand(n, 3, 1, 1, generator=gen, device=dev) - 0.5)  # small colour cast
    noise = torch.randn(out.shape, generator=gen, device=dev) * 0.03 * torch.rand(n, 1, 1, 1, generator=gen, device=dev)
    return (out * gain + noise).clamp(0, 1)


def make_batch(pack: SpritePack, classes: tuple[str, ...], n: int, rng: random.Random,
               augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, INPUT_SIZE, INPUT_SIZE) crops in [0, 1] and (n,) class indices, from fresh renders."""
    specs = [_random_spec(rng, pack, classes) for _ in range(n)]
    images = (render_batch(specs, pack, RENDER_SIZE) + 1) / 2  # (n, 3, R, R) on the pack's device
    boxes: list[Frac] = []
    for spec in specs:
        cell = object_places(spec)[0].cells[0]
        if augment:  # the generator will not put things exactly where the layout says
            boxes.append(square_around(cell, rng.uniform(0.85, 1.2), (rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08))))
        else:
            boxes.append(square_around(cell))
    crops = crop(images, boxes, list(range(n)), INPUT_SIZE)
    if augment:
        crops = _soften(crops, torch.Generator(crops.device).manual_seed(rng.randrange(2**31)))
    labels = torch.tensor([classes.index(s.objects[0].concept_id) for s in specs], device=crops.device)
    return crops, labels


def accuracy(clf: ObjectClassifier, pack: SpritePack, n: int, seed: int) -> float:
    """Top-1 accuracy on ``n`` fresh renders from the held-out random stream ``seed``."""
    rng = random.Random(f"classifier-heldout-{seed}")
    correct = 0
    for start in range(0, n, 256):
        crops, labels = make_batch(pack, clf.classes, min(256, n - start), rng, augment=False)
        correct += (clf.logits(crops).argmax(1) == labels.cpu()).sum().item()
    return correct / n


def train(pack: SpritePack, steps: int, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
          log_every: int = 50, classes: tuple[str, ...] | None = None) -> ObjectClassifier:
    """Train from scratch (AdamW, one-cycle LR); prints a line every ``log_every`` steps."""
    classes = tuple(classes or pack.common_vocab)
    if not classes:
        raise ZaoxiangError("the sprite pack has no COMMON_VOCAB concepts to train on", field="pack")
    torch.manual_seed(seed)
    rng = random.Random(f"classifier-train-{seed}")
    net = ObjectNet(len(classes)).to(pack.device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    net.train()
    running = 0.0
    for step in range(1, steps + 1):
        crops, labels = make_batch(pack, classes, batch_size, rng)
        loss = F.cross_entropy(net(crops), labels, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps} loss {running / ((step - 1) % log_every + 1):.3f}", flush=True)
            running = 0.0
    return ObjectClassifier(net, classes)
