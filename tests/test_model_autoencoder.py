import torch

from zaoxiang.model.autoencoder import Autoencoder, kl_loss
from zaoxiang.model.config import AutoencoderConfig, preset


def test_shapes_and_factor():
    cfg = AutoencoderConfig(channels=(8, 16, 16, 16), latent_channels=4, image_size=64)
    ae = Autoencoder(cfg)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    mean, logvar = ae.encode(x)
    assert cfg.downsample == 8 and mean.shape == (2, 4, 8, 8) == logvar.shape
    assert ae.decode(mean).shape == x.shape
    assert preset("base").autoencoder.latent_size == 32


def test_latent_normalisation_roundtrip():
    ae = Autoencoder(preset("tiny").autoencoder).eval()
    raw = torch.randn(16, 4, 8, 8) * 3 + 2
    ae.set_latent_stats(raw)
    assert torch.allclose(ae.latent_mean, raw.transpose(0, 1).flatten(1).mean(1), atol=1e-4)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = ae.encode_latents(x, sample=False)
    mean, _ = ae.encode(x)
    assert torch.allclose(ae.decode_latents(z), ae.decode(mean).clamp(-1, 1), atol=1e-5)


def test_kl_is_zero_for_the_prior_only():
    assert kl_loss(torch.zeros(3), torch.zeros(3)) == 0
    assert kl_loss(torch.ones(3), torch.zeros(3)) > 0
