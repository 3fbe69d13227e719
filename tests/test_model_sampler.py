import torch

from zaoxiang.model.sampler import FlowEulerSampler, apply_guidance, denoise, shift_time


def test_timesteps_run_from_noise_to_data_with_shift():
    s = FlowEulerSampler(shift=3.0)
    times = s.set_timesteps(4)
    assert times.shape == (4,) and s.timesteps[0] == 1.0 and s.timesteps[-1] == 0.0
    assert torch.all(s.timesteps[1:] < s.timesteps[:-1])
    assert s.timesteps[2] > 0.5  # shift > 1 keeps more steps at high noise
    assert torch.allclose(shift_time(torch.tensor([0.5]), 1.0), torch.tensor([0.5]))


class _Oracle(torch.nn.Module):
    """Knows x0: velocity of the straight path through x_t at time t is (x_t - x0) / t."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x, t, text, mask):
        return (x - self.x0) / t.view(-1, 1, 1, 1)


def test_euler_on_a_straight_path_lands_on_the_data():
    x0 = torch.randn(2, 4, 8, 8)
    noise = torch.randn(2, 4, 8, 8)
    calls = []
    out = denoise(_Oracle(x0), noise, torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), 3, 2.0,
                  on_step=lambda i, n, lat: calls.append((i, n)))
    assert torch.allclose(out, x0, atol=1e-5)
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_step_runs_in_fp32_and_keeps_dtype():
    s = FlowEulerSampler(shift=1.0)
    s.set_timesteps(1000)
    x = torch.ones(4, dtype=torch.bfloat16)
    out = s.step(torch.full((4,), 0.5, dtype=torch.bfloat16), 0, x)
    assert out.dtype == torch.bfloat16


def test_guidance_formula():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert apply_guidance(c, u, 1.0) == c and apply_guidance(c, u, 3.0) == torch.tensor([4.0])


def test_cfg_batches_prompt_and_negative():
    seen = []

    class M(torch.nn.Module):
        def forward(self, x, t, text, mask):
            seen.append((x.shape[0], text.shape[1]))
            return text[:, :1, :1, None].expand_as(x)  # v = first text value: cond 1, uncond 0

    noise = torch.zeros(1, 1, 2, 2)
    text = torch.ones(1, 2, 1)
    neg = torch.zeros(1, 4, 1)
    out = denoise(M(), noise, text, torch.ones(1, 2, dtype=torch.bool), 2, 1.0, 3.0, neg,
                  torch.ones(1, 4, dtype=torch.bool))
    assert seen == [(2, 4), (2, 4)]
    assert torch.allclose(out, torch.full_like(out, -3.0))  # v = 0 + 3 * (1 - 0), dt total = -1
