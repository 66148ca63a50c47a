"""covlab.Schedule.diffusers against an independent numpy transcription of diffusers'
published formulas (DDPMScheduler / DDIMScheduler __init__ and set_timesteps)."""

import math

import numpy as np
import pytest

import covlab

N = 1000
STEPS = [1, 5, 10, 16, 25, 50, 999, 1000]


def torch_linspace_f32(start, end, n):
    # torch's CPU linspace in float32: step = (end - start) / (n - 1), the first half from
    # start, the second half back from end.
    start, end = np.float32(start), np.float32(end)
    step = (end - start) / np.float32(n - 1)
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        out[i] = start + step * np.float32(i) if i < n // 2 else end - step * np.float32(n - 1 - i)
    return out


def diffusers_alphas_cumprod(beta_schedule, beta_start=1e-4, beta_end=0.02):
    if beta_schedule == "linear":
        betas = torch_linspace_f32(beta_start, beta_end, N)
    elif beta_schedule == "scaled_linear":
        r = torch_linspace_f32(beta_start**0.5, beta_end**0.5, N)
        betas = r * r
    else:
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.array(
            [min(1 - f((i + 1) / N) / f(i / N), 0.999) for i in range(N)], dtype=np.float32
        )
    alphas = np.float32(1.0) - betas
    # torch.cumprod on the CPU accumulates float32 in double and rounds each entry.
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32).astype(np.float64)


def diffusers_timesteps(spacing, steps, offset):
    if spacing == "linspace":
        return np.linspace(0, N - 1, steps).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        ratio = N // steps
        return (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.int64) + offset
    ratio = N / steps
    return np.round(np.arange(N, 0, -ratio)).astype(np.int64) - 1


@pytest.mark.parametrize("beta", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_alphas_cumprod_match_diffusers(beta):
    bs, be = (0.00085, 0.012) if beta == "scaled_linear" else (1e-4, 0.02)
    ours = covlab.Schedule.diffusers(beta, beta_start=bs, beta_end=be).alphas_cumprod
    ref = diffusers_alphas_cumprod(beta, bs, be)
    # diffusers works in float32: 1e-6 relative is ~16 float32 ulps.
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
    if beta == "squaredcos_cap_v2":
        assert abs(ours[-1] / 2.4e-9 - 1) < 0.02


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("offset", [0, 1])
def test_timesteps_match_diffusers(spacing, offset):
    for steps in STEPS:
        ref = diffusers_timesteps(spacing, steps, offset)
        if spacing == "leading" and ref.max() >= N:
            with pytest.raises(ValueError, match="steps_offset"):
                covlab.Schedule.diffusers(timestep_spacing=spacing, steps_offset=offset).timesteps(steps)
            continue
        s = covlab.Schedule.diffusers(timestep_spacing=spacing, steps_offset=offset)
        np.testing.assert_array_equal(s.timesteps(steps), ref, err_msg=f"{spacing} T={steps}")


def test_grid_is_the_data_then_the_timesteps():
    s = covlab.Schedule.diffusers("squaredcos_cap_v2", timestep_spacing="trailing")
    ac = s.alphas_cumprod
    for steps in [1, 10, 50]:
        g = s.grid(steps)
        assert g.shape == (steps + 1,) and g[0] == 1.0
        ts = s.timesteps(steps)[::-1]
        np.testing.assert_allclose(g[1:], ac[ts], rtol=1e-14)


def test_from_alphas_cumprod_and_bad_input():
    ac = covlab.Schedule.diffusers("linear").alphas_cumprod
    s = covlab.Schedule.from_alphas_cumprod(ac, timestep_spacing="trailing")
    np.testing.assert_array_equal(s.timesteps(10), np.arange(999, -1, -100))
    with pytest.raises(ValueError, match="alphas_cumprod"):
        covlab.Schedule.from_alphas_cumprod(ac[::-1].copy())
    with pytest.raises(ValueError, match="alphas_cumprod"):
        covlab.Schedule.from_alphas_cumprod(np.array([0.9, np.nan]))
    with pytest.raises(ValueError, match="timesteps"):
        covlab.Schedule.from_alphas_cumprod(ac, timesteps=[5, 7])
    with pytest.raises(ValueError, match="timestep_spacing"):
        covlab.Schedule.diffusers(timestep_spacing="even")
    with pytest.raises(ValueError, match="beta_schedule"):
        covlab.Schedule.diffusers("cosine")
    with pytest.raises(ValueError, match="name"):
        covlab.Schedule("vp_linear")
    with pytest.raises(ValueError, match="steps"):
        covlab.Schedule.diffusers().grid(0)
