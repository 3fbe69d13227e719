"""Errors the safety layer raises, with stable codes the API returns as-is."""

from __future__ import annotations

from zaoxiang.errors import ZaoxiangError


class PromptBlocked(ZaoxiangError):
    """The prompt matched the deployment's block list; no image is made."""

    code = "prompt_blocked"
    http_status = 400


class ImageBlocked(ZaoxiangError):
    """An output scored above the NSFW threshold under the ``block`` policy; nothing is stored."""

    code = "image_blocked"
    http_status = 400


class SafetyConfigError(ZaoxiangError):
    """A list file or setting is unusable (missing file, bad line, bad threshold order)."""

    code = "safety_config_invalid"
    http_status = 500


class WatermarkError(ZaoxiangError):
    """The watermark cannot be embedded: image too small or payload of the wrong length."""

    code = "watermark_failed"
    http_status = 500
