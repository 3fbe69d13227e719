"""The dataset builder of the built-in model: packaged emoji + signs -> captioned scenes, on the fly.

    build_pack(assets_dir, out)        one zip of all sprites (run once where the assets are)
    pack = SpritePack.load(out, dev)   decoded sprites on a device
    TrainStream(pack, 256, seed)       endless Batch(images, captions, langs, specs)
    heldout_eval_set(pack, n)          the fixed EvalItems that training never shows
"""

from zaoxiang.training.data.captions import caption
from zaoxiang.training.data.concepts import Concept
from zaoxiang.training.data.evalset import EVAL_CATEGORIES, EvalItem, heldout_eval_set
from zaoxiang.training.data.heldout import is_heldout
from zaoxiang.training.data.pack import SignKey, SpritePack, build_pack
from zaoxiang.training.data.render import render_batch
from zaoxiang.training.data.sampler import SceneSampler
from zaoxiang.training.data.scenes import Background, SceneObject, SceneSpec, Sign
from zaoxiang.training.data.stream import Batch, TrainStream
from zaoxiang.training.data.vocab import COMMON_VOCAB

__all__ = [
    "COMMON_VOCAB", "EVAL_CATEGORIES", "Background", "Batch", "Concept", "EvalItem", "SceneObject", "SceneSampler",
    "SceneSpec", "Sign", "SignKey", "SpritePack", "TrainStream", "build_pack", "caption", "heldout_eval_set",
    "is_heldout", "render_batch",
]
