import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from zaoxiang.safety.errors import WatermarkError
from zaoxiang.safety.watermark import (
    PAYLOAD_BITS,
    decode_bits,
    embed_watermark,
    make_payload,
    read_watermark,
    short_id,
)

EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
PAYLOAD = make_payload(b"\x01\x23\xab\xcd")
BITS = np.unpackbits(np.frombuffer(PAYLOAD, dtype=np.uint8))


def emoji_image(char: str, background: tuple[int, int, int], size: int) -> Image.Image:
    """Like the built-in model's output: one colour emoji on a flat background."""
    font = ImageFont.truetype(EMOJI_FONT, 109)
    glyph = Image.new("RGB", (136, 128), background)
    ImageDraw.Draw(glyph).text((0, 0), char, font=font, embedded_color=True)
    glyph = glyph.resize((size * 3 // 5, size * 3 // 5))
    canvas = Image.new("RGB", (size, size), background)
    canvas.paste(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
    return canvas


def roundtrip(image: Image.Image, fmt: str, **kw) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a.convert("RGB"), float), np.asarray(b.convert("RGB"), float)
    return float(10 * np.log10(255**2 / np.mean((x - y) ** 2)))


# Pure white, black and saturated colours are the hard flat cases (clipping); grey and pastel the easy ones.
CASES_256 = [("🍎", (255, 255, 255)), ("🐱", (0, 0, 0)), ("🚀", (30, 90, 200)), ("🍕", (240, 200, 40)), ("⛄", (255, 0, 0))]


@pytest.mark.parametrize("char, bg", CASES_256)
def test_flat_emoji_256_survives_png_and_jpeg90(char, bg):
    original = emoji_image(char, bg, 256)
    marked = embed_watermark(original, PAYLOAD)
    assert psnr(original, marked) > 33
    assert read_watermark(original) is None
    for reloaded in (roundtrip(marked, "PNG"), roundtrip(marked, "JPEG", quality=90)):
        assert (decode_bits(reloaded) == BITS).mean() == 1.0
        assert read_watermark(reloaded) == PAYLOAD


@pytest.mark.slow
def test_1024_emoji_and_textured_survive_jpeg90():
    rng = np.random.default_rng(0)
    textured = Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).resize((1024, 1024))
    for original in (emoji_image("🍎", (250, 240, 230), 1024), textured):
        marked = embed_watermark(original, PAYLOAD)
        assert read_watermark(roundtrip(marked, "PNG")) == PAYLOAD
        assert read_watermark(roundtrip(marked, "JPEG", quality=90)) == PAYLOAD


def test_survives_the_engine_metadata_writer():
    from tests.test_metadata import result

    from zaoxiang.engine.metadata import encode_image, read_metadata

    marked = embed_watermark(emoji_image("🍎", (255, 255, 255), 256), PAYLOAD)
    data = encode_image(marked, result(), 0, "png")
    assert read_watermark(Image.open(io.BytesIO(data))) == PAYLOAD
    assert read_metadata(data)["zaoxiang"]["generator"].startswith("zaoxiang")
    jpeg = encode_image(marked, result(), 0, "jpeg")
    assert read_watermark(Image.open(io.BytesIO(jpeg))) == PAYLOAD


def test_rgba_keeps_alpha_and_mark():
    rgba = emoji_image("🍎", (30, 90, 200), 256).convert("RGBA")
    rgba.putalpha(200)
    marked = embed_watermark(rgba, PAYLOAD)
    assert marked.mode == "RGBA" and marked.getchannel("A").getextrema() == (200, 200)
    assert read_watermark(roundtrip(marked, "PNG")) == PAYLOAD


def test_small_images_are_refused_clearly_and_read_as_unmarked():
    small = emoji_image("🍎", (255, 255, 255), 128)
    with pytest.raises(WatermarkError) as info:
        embed_watermark(small, PAYLOAD)
    assert "256x256" in info.value.message and info.value.field == "image"
    assert read_watermark(small) is None


def test_payload_and_id_validation():
    assert len(PAYLOAD) * 8 == PAYLOAD_BITS
    assert short_id("job-1") == short_id("job-1") != short_id("job-2")
    with pytest.raises(WatermarkError):
        make_payload(b"toolong")
    with pytest.raises(WatermarkError):
        embed_watermark(emoji_image("🍎", (0, 0, 0), 256), b"zaoxiang")


def test_other_payload_reads_back_different():
    other = make_payload(short_id("another job"))
    marked = embed_watermark(emoji_image("🐱", (128, 128, 128), 256), other)
    assert read_watermark(roundtrip(marked, "JPEG", quality=90)) == other != PAYLOAD
