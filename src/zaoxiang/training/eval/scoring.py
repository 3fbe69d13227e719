"""Per-category scorers: does an image show what its scene spec says?

Every scorer looks only at pixels plus the spec (never at how the image was made), so the same
code judges the data builder's own renders (must pass ~always: tests/test_eval_scoring.py) and a
model's outputs. Images are first resized to ``WORK_SIZE``² so thresholds mean the same at every
model resolution.

    identity    square crop around the object's cell -> classifier top-1 over COMMON_VOCAB
    position    per object: something is in its region, and the region's crop is classified as
                that object (top-5 over the vocabulary, and first among the scene's objects),
                so swapped objects fail
    count       connected components of non-background pixels in the object's region, each about
                one copy's size (any size and arrangement the caption leaves open)
    background  median of the border pixels -> nearest palette colour
    sign        Tesseract OCR of the sign box (eng+chi_sim), exact match after normalisation
"""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from zaoxiang.errors import ZaoxiangError
from zaoxiang.training.data.evalset import EvalItem
from zaoxiang.training.data.lexicon import COLOURS
from zaoxiang.training.data.render import SIZE_FACTOR, cells
from zaoxiang.training.data.scenes import SceneSpec, arrangements_for
from zaoxiang.training.eval.classifier import INPUT_SIZE, ObjectClassifier
from zaoxiang.training.eval.geometry import Frac, crop, object_places, sign_box, square_around

WORK_SIZE = 256
BORDER = 0.03  # border ring (fraction of the side) that background estimation reads
FG_THRESHOLD = 0.16  # RGB distance (in [0, 1] units) from the background that counts as "something"
COMPONENT_MIN_FRAC = 0.25  # a blob smaller than this share of the largest one is debris, not an object
COMPONENT_MIN_AREA = 0.002  # ... and so is anything under 0.2 % of the canvas
PRESENCE_MIN = 0.005  # share of a region that must be foreground for "an object is there" (a small
# object in a third of the canvas covers ~1.5 %)
POSITION_TOPK = 5
SIDE_RANGE = (0.3, 1.25)  # a counted blob's longer side vs the side one copy is drawn at
# Captions never name the medium size (captions._object_phrase), so a medium object may be drawn at
# any size training uses; but the largest copy spans 95 % of its cell, so a blob spanning nearly the
# whole cell is a smear, not one copy.
SMEAR_SIDE = 0.98
BLANK_STD = 4.0  # grey-level spread (0-255) under which a sign box is empty, not worth an OCR call
OCR_PSMS = (7, 8)  # Tesseract page modes: one text line, then one word (short Chinese words need 8)

_PALETTE = torch.tensor([c.rgb for c in COLOURS], dtype=torch.float32) / 255  # (P, 3)
_PALETTE_IDS = tuple(c.id for c in COLOURS)


class OcrUnavailable(ZaoxiangError):
    code = "ocr_unavailable"


@dataclass(frozen=True)
class ItemScore:
    category: str
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)


def to_tensor(image: Image.Image | torch.Tensor) -> torch.Tensor:
    """(3, WORK_SIZE, WORK_SIZE) float in [0, 1] from a PIL image or a (3, H, W) [0, 1] tensor."""
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255  # (H, W, 3)
        t = torch.from_numpy(arr).permute(2, 0, 1)
    else:
        t = image.float().cpu()
    if t.shape[-1] != WORK_SIZE or t.shape[-2] != WORK_SIZE:
        t = F.interpolate(t[None], size=(WORK_SIZE, WORK_SIZE), mode="bilinear", antialias=True, align_corners=False)[0]
    return t.clamp(0, 1)


# -- background --------------------------------------------------------------------------------


def background_rgb(img: torch.Tensor) -> torch.Tensor:
    """(3,) median colour of the border ring of (3, H, W) ``img``."""
    b = max(2, round(img.shape[-1] * BORDER))
    ring = torch.cat([img[:, :b].flatten(1), img[:, -b:].flatten(1), img[:, :, :b].flatten(1), img[:, :, -b:].flatten(1)], 1)
    return ring.median(dim=1).values


def nearest_colour(rgb: torch.Tensor) -> str:
    return _PALETTE_IDS[int(((_PALETTE - rgb) ** 2).sum(1).argmin())]


def foreground(img: torch.Tensor, bg: torch.Tensor | None = None) -> torch.Tensor:
    """(H, W) bool: pixels far from the estimated background colour."""
    bg = background_rgb(img) if bg is None else bg
    return (img - bg.view(3, 1, 1)).norm(dim=0) > FG_THRESHOLD


# -- connected components ----------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    area: int  # pixels of the (unclosed) mask
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in mask pixels

    @property
    def side(self) -> int:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def blobs(mask: torch.Tensor, close: int = 1) -> list[Blob]:
    """The 8-connected components of (H, W) bool ``mask``, largest first.

    Hand-written (max-pool label propagation) because the project has no scipy/opencv dependency;
    a 128² mask converges in at most a few hundred cheap pooling passes. ``close`` dilates first by
    that many pixels so anti-aliased gaps inside one emoji do not split it.
    """
    m = mask.float()[None, None]  # (1, 1, H, W)
    if close:
        m = F.max_pool2d(m, 2 * close + 1, stride=1, padding=close)
    on = m > 0
    h, w = mask.shape
    labels = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w) * on  # (1, 1, H, W)
    for _ in range(h * w):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * on
        if torch.equal(grown, labels):
            break
        labels = grown
    # Areas and boxes on the undilated mask, so closing joins blobs without inflating them.
    ys, xs = mask.nonzero(as_tuple=True)  # (N,), (N,)
    if len(ys) == 0:
        return []
    ids, inv, counts = labels[0, 0][ys, xs].unique(return_inverse=True, return_counts=True)  # (K,), (N,), (K,)
    k = len(ids)

    def reduce(v: torch.Tensor, how: str, fill: int) -> list[int]:
        return torch.full((k,), fill).scatter_reduce(0, inv, v, how).tolist()

    x0, y0 = reduce(xs, "amin", w), reduce(ys, "amin", h)
    x1, y1 = reduce(xs, "amax", -1), reduce(ys, "amax", -1)
    out = [Blob(int(c), (a, b, cc + 1, d + 1)) for c, a, b, cc, d in zip(counts.tolist(), x0, y0, x1, y1)]
    return sorted(out, key=lambda b: -b.area)


def components(mask: torch.Tensor, close: int = 1) -> list[int]:
    """Areas of ``blobs(mask, close)``, largest first."""
    return [b.area for b in blobs(mask, close)]


def side_bounds(size: str) -> tuple[float, float]:
    """The longer side one copy of an object of ``size`` may plausibly have, as fractions of its
    cell's side: around the size's own factor when captions name it (small, large), anywhere from
    small to large when they never do (medium), short of a cell-filling smear."""
    smallest, largest = ("small", "large") if size == "medium" else (size, size)
    return SIDE_RANGE[0] * SIZE_FACTOR[smallest], min(SIDE_RANGE[1] * SIZE_FACTOR[largest], SMEAR_SIDE)


def object_blobs(img: torch.Tensor, box: Frac = (0.0, 0.0, 1.0, 1.0)) -> tuple[list[Blob], float]:
    """The object-sized blobs inside ``box`` of ``img`` (3, H, W) (debris dropped), and the scale
    from blob pixels back to ``img`` pixels."""
    h, w = img.shape[-2:]
    mask = foreground(img)
    x0, y0, x1, y1 = (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))
    region = mask[max(0, y0):y1, max(0, x0):x1]
    # Half resolution: same answer on these sizes, 4x fewer propagation passes.
    small = F.max_pool2d(region.float()[None, None], 2)[0, 0] > 0
    found = blobs(small)
    if not found:
        return [], 2.0
    floor = max(found[0].area * COMPONENT_MIN_FRAC, COMPONENT_MIN_AREA * (h * w) / 4)
    return [b for b in found if b.area >= floor], 2.0


def count_objects(img: torch.Tensor, box: Frac = (0.0, 0.0, 1.0, 1.0)) -> int:
    """How many separate objects lie inside ``box`` of ``img`` (3, H, W)."""
    return len(object_blobs(img, box)[0])


# -- OCR ---------------------------------------------------------------------------------------


def normalise_text(text: str) -> str:
    """NFKC, upper case, letters/digits/CJK only: OCR spacing and quotes do not matter."""
    text = unicodedata.normalize("NFKC", text).upper()
    return "".join(ch for ch in text if ch.isalnum())


class TesseractOcr:
    """The ``tesseract`` CLI (Debian tesseract-ocr + tesseract-ocr-chi-sim), one line per call."""

    def __init__(self, langs: str = "eng+chi_sim", psm: int = 7, timeout_s: float = 30.0) -> None:
        self.langs, self.psm, self.timeout_s = langs, psm, timeout_s
        self.binary = shutil.which("tesseract")

    def read(self, image: Image.Image, langs: str | None = None, psm: int | None = None) -> str:
        if self.binary is None:
            raise OcrUnavailable("tesseract is not installed (Debian: tesseract-ocr tesseract-ocr-chi-sim)")
        buf = BytesIO()
        image.save(buf, format="PNG")
        try:
            out = subprocess.run(
                [self.binary, "stdin", "stdout", "-l", langs or self.langs, "--psm", str(psm or self.psm)],
                input=buf.getvalue(), capture_output=True, timeout=self.timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            return ""
        return out.stdout.decode("utf-8", "replace").strip()


def _ink(grey: Image.Image, dark: bool, k: float = 0.4) -> Image.Image:
    """Black-on-white mask of the darkest (or lightest) pixels: strips wood grain, plank seams and
    neon glow that make Tesseract read nothing."""
    a = np.asarray(grey, dtype=np.float32)
    med = float(np.median(a))
    mask = a < a.min() + k * (med - a.min()) if dark else a > a.max() - k * (a.max() - med)
    return Image.fromarray(np.where(mask, 0, 255).astype(np.uint8))


def _ocr_views(crop_img: Image.Image) -> list[Image.Image]:
    """The sign crop enlarged 3x, as grey with stretched contrast, as dark ink and as light ink
    (measured on the data builder's sign styles: each view alone misses some, together none)."""
    big = crop_img.resize((crop_img.width * 3, crop_img.height * 3), Image.Resampling.LANCZOS)
    grey = big.convert("L")
    return [ImageOps.autocontrast(grey, cutoff=1), _ink(grey, dark=True), _ink(grey, dark=False)]


# -- the scorer ----------------------------------------------------------------------------------


class Scorer:
    def __init__(self, classifier: ObjectClassifier, ocr: TesseractOcr | None = None, sign_aspect: float = 2.0) -> None:
        self.classifier = classifier
        self.ocr = ocr or TesseractOcr()
        self.sign_aspect = sign_aspect

    def score(self, image: Image.Image | torch.Tensor, item: EvalItem) -> ItemScore:
        img = to_tensor(image)
        fn = {"identity": self.identity, "position": self.position, "count": self.count,
              "background": self.background, "sign": self.sign}.get(item.category)
        if fn is None:
            raise ZaoxiangError(f"no scorer for category {item.category!r}", field="category")
        passed, detail = fn(img, item.spec)
        return ItemScore(item.category, passed, detail)

    def identity(self, img: torch.Tensor, spec: SceneSpec) -> tuple[bool, dict]:
        place = object_places(spec)[0]
        crops = crop(img[None], [square_around(place.cells[0])], [0], INPUT_SIZE)
        predicted = self.classifier.predict(crops)[0]
        return predicted == place.concept_id, {"expected": place.concept_id, "predicted": predicted}

    def position(self, img: torch.Tensor, spec: SceneSpec) -> tuple[bool, dict]:
        places = object_places(spec)
        scene_ids = [p.concept_id for p in places]
        known = [self.classifier.index.get(c) for c in scene_ids]
        mask = foreground(img)
        h, w = mask.shape
        crops = crop(img[None], [square_around(p.region) for p in places], [0] * len(places), INPUT_SIZE)
        logits = self.classifier.logits(crops)  # (n_objects, K)
        per_object = []
        for i, p in enumerate(places):
            x0, y0, x1, y1 = p.region
            present = mask[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)].float().mean().item()
            ok = present >= PRESENCE_MIN and known[i] is not None
            if ok:
                top = logits[i].topk(POSITION_TOPK).indices.tolist()
                among = max((k for k in known if k is not None), key=lambda k: logits[i, k].item())
                ok = known[i] in top and among == known[i]
            per_object.append({"object": p.concept_id, "position": p.position, "presence": round(present, 3), "ok": ok})
        return all(o["ok"] for o in per_object), {"objects": per_object}

    def count(self, img: torch.Tensor, spec: SceneSpec) -> tuple[bool, dict]:
        """The right number of blobs, each about as big as one copy should be (a smear over the
        whole region is not "one object")."""
        places = object_places(spec)
        got, sized = [], True
        for p, obj in zip(places, spec.objects):
            found, scale = object_blobs(img, p.region)
            got.append(len(found))
            # Neither size nor arrangement need be in the caption: bound each blob by the smallest
            # and largest cell any trained arrangement of this count gives, times side_bounds.
            cell_sides = [min(c[2] - c[0], c[3] - c[1]) * img.shape[-1]
                          for arrangement in arrangements_for(obj.count, obj.position)
                          for c in cells(obj.model_copy(update={"arrangement": arrangement}), p.region)]
            lo, hi = side_bounds(obj.size)
            sized = sized and all(lo * min(cell_sides) <= b.side * scale <= hi * max(cell_sides) for b in found)
        want = [p.count for p in places]
        return got == want and sized, {"expected": want, "counted": got, "sizes_plausible": sized}

    def background(self, img: torch.Tensor, spec: SceneSpec) -> tuple[bool, dict]:
        bg = spec.background
        if bg.kind != "solid":
            raise ZaoxiangError("the background scorer checks solid backgrounds only", field="background")
        got = nearest_colour(background_rgb(img))
        return got == bg.colours[0], {"expected": bg.colours[0], "predicted": got}

    def sign(self, img: torch.Tensor, spec: SceneSpec) -> tuple[bool, dict]:
        box = sign_box(spec, self.sign_aspect)
        x0, y0, x1, y1 = box
        pad_x, pad_y = (x1 - x0) * 0.05, (y1 - y0) * 0.1
        pix = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
        im = Image.fromarray(pix)
        s = im.width
        sign_img = im.crop((round((x0 - pad_x) * s), round((y0 - pad_y) * s), round((x1 + pad_x) * s), round((y1 + pad_y) * s)))
        want = normalise_text(spec.sign.text)
        if np.asarray(sign_img.convert("L"), dtype=np.float32).std() < BLANK_STD:
            return False, {"expected": want, "read": [], "blank": True}  # nothing there to read
        reads = []
        views = _ocr_views(sign_img)
        for psm in OCR_PSMS:
            for view in views:
                text = normalise_text(self.ocr.read(view, psm=psm))
                reads.append(text)
                if text == want:
                    return True, {"expected": want, "read": reads}
        return False, {"expected": want, "read": reads}
