"""Where the packaged assets are: the npm folder that scripts/setup_assets.sh fills, and the fonts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from zaoxiang.errors import ZaoxiangError

ASSETS_ENV = "ZAOXIANG_ASSETS"
NOTO_EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
NOTO_CJK_BOLD_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")


class AssetsNotFound(ZaoxiangError):
    """An asset the dataset needs is not installed (run scripts/setup_assets.sh)."""

    code = "assets_not_found"
    http_status = 503


@dataclass(frozen=True)
class AssetPaths:
    root: Path
    fluent_3d: Path  # folder of <codepoints>.webp, 256² RGBA
    twemoji_svg: Path  # folder of <codepoints>.svg
    cldr_en: Path
    cldr_zh: Path
    cldr_derived_en: Path
    cldr_derived_zh: Path
    emoji_groups: Path  # unicode-emoji-json data-by-group.json
    noto_emoji_font: Path
    cjk_font: Path
    cjk_bold_font: Path


def default_assets_dir() -> Path:
    env = os.environ.get(ASSETS_ENV)
    if env:
        return Path(env)
    # <repo>/assets, for an editable install from the repository (src/zaoxiang/training/data/...).
    return Path(__file__).resolve().parents[4] / "assets"


def find_assets(assets_dir: str | Path | None = None) -> AssetPaths:
    """Resolve every asset path, raising AssetsNotFound naming the first one missing."""
    root = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    nm = root / "npm" / "node_modules"
    paths = AssetPaths(
        root=root,
        fluent_3d=nm / "@lobehub" / "fluent-emoji-3d" / "assets",
        twemoji_svg=nm / "@twemoji" / "svg",
        cldr_en=nm / "cldr-annotations-full" / "annotations" / "en" / "annotations.json",
        cldr_zh=nm / "cldr-annotations-full" / "annotations" / "zh" / "annotations.json",
        cldr_derived_en=nm / "cldr-annotations-derived-full" / "annotationsDerived" / "en" / "annotations.json",
        cldr_derived_zh=nm / "cldr-annotations-derived-full" / "annotationsDerived" / "zh" / "annotations.json",
        emoji_groups=nm / "unicode-emoji-json" / "data-by-group.json",
        noto_emoji_font=NOTO_EMOJI_FONT,
        cjk_font=NOTO_CJK_FONT,
        cjk_bold_font=NOTO_CJK_BOLD_FONT if NOTO_CJK_BOLD_FONT.exists() else NOTO_CJK_FONT,
    )
    for name, path in vars(paths).items():
        if not Path(path).exists():
            raise AssetsNotFound(
                f"asset {name} not found at {path}; run scripts/setup_assets.sh "
                f"(or set {ASSETS_ENV} to the folder it installed into)",
                field="assets_dir",
            )
    return paths
