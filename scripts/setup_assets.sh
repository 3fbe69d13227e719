#!/usr/bin/env bash
# Install the packaged assets the built-in model's dataset is made from (nothing else is downloaded,
# ever, at run time). Usage: scripts/setup_assets.sh [ASSETS_DIR]   (or env ZAOXIANG_ASSETS)
# Default ASSETS_DIR is <repo>/assets, which git ignores.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="${1:-${ZAOXIANG_ASSETS:-$repo/assets}}"
mkdir -p "$assets/npm"

# npm: emoji images (3D + flat SVG), the CLDR names/keywords in every language, and the Unicode
# emoji groups/subgroups (unicode-emoji-json) that categories come from. Versions pinned
# so that a rebuilt sprite pack is byte-for-byte the same data.
npm install --no-audit --no-fund --silent --prefix "$assets/npm" \
  @lobehub/fluent-emoji-3d@1.1.0 \
  cldr-annotations-full@48.2.0 \
  cldr-annotations-derived-full@48.2.0 \
  @twemoji/svg@15.0.0 \
  unicode-emoji-json@0.9.0

# Debian: Noto Color Emoji (the "emoji" style) and Noto CJK (sign text). Only when missing, and only
# as root, because this script must not prompt for a password in CI.
missing=()
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    echo "setup_assets: missing Debian packages ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# PyPI: the SVG rasteriser for the flat (Twemoji) style; self-contained wheel, no system cairo.
py="${PYTHON:-$repo/.venv/bin/python}"
if ! "$py" -c "import resvg_py" 2>/dev/null; then
  "$py" -m pip install --quiet resvg-py==0.5.0
fi

echo "assets installed in $assets"
