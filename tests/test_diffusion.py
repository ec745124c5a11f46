"""DDPM and stochastic-interpolant objectives and samplers, checked on problems with known answers:
Gaussian data, whose exact ε and velocity are closed-form, so a correct sampler must land on the
data's mean and standard deviation (and an ODE sampler on the exact transport map); plus a tiny DiT
that learns a two-class toy problem on CPU, guidance arithmetic and seeded determinism."""

from __future__ import annotations

import math

import pytest
import torch

from multimodal.errors import InputError
from multimodal.generation import GaussianDiffusion, Transport, classifier_free_guidance, ddpm_sample, sit_sample
from multimodal.models.dit import DiT, DiTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, STD = 1.5, 0.5  # the data: N(MEAN, STD²) in every coordinate
N = 4000


def seed(s: int) -> torch.Generator:
    return torch.Generator().manual_seed(s)


def gaussian_eps(diffusion: GaussianDiffusion):
    """E[ε | x_t] for Gaussian data: sqrt(1 - ā) (x - sqrt(ā) m) / (ā s² + 1 - ā)."""
    ac = diffusion.alphas_cumprod.double()

    def eps(x, t, **_):
        a = ac[t.long()].reshape(-1, *([1] * (x.ndim - 1)))
        return ((1 - a).sqrt() / (a * STD**2 + 1 - a) * (x - a.sqrt() * MEAN)).float()
    return eps


def gaussian_velocity(transport: Transport):
    """E[α̇ x1 + σ̇ x0 | x_t = x] for x1 ~ N(m, s²), x0 ~ N(0, 1):
    α̇ m + (α̇ α s² + σ̇ σ) / (α² s² + σ²) (x - α m)."""
    def v(x, t, **_):
        tt = (t.double() / transport.time_scale).reshape(-1, *([1] * (x.ndim - 1)))
        a, s, da, ds = transport.coefficients(tt)
        return (da * MEAN + (da * a * STD**2 + ds * s) / (a**2 * STD**2 + s**2) * (x - a * MEAN)).float()
    return v


def assert_moments(x: torch.Tensor, tol_mean: float = 0.03, tol_std: float = 0.04):
    assert abs(x.mean().item() - MEAN) < tol_mean, x.mean().item()
    assert abs(x.std().item() - STD) < tol_std, x.std().item()


# ------------------------------------------------------------------------------- interpolants
@pytest.mark.parametrize("path", ["linear", "gvp"])
def test_interpolant_paths_marginals_and_velocity(path):
    tr = Transport(path)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    a, s, da, ds = tr.coefficients(t)
    if path == "linear":
        torch.testing.assert_close(a, t)
        torch.testing.assert_close(s, 1 - t)
    else:
        torch.testing.assert_close(a, torch.sin(math.pi * t / 2))
        torch.testing.assert_close(s, torch.cos(math.pi * t / 2))
        torch.testing.assert_close(a**2 + s**2, torch.ones_like(t))  # variance preserving
    # t = 0 is pure noise, t = 1 pure data (SiT's direction)
    x0, x1 = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64) + 3
    xt, ut = tr.interpolate(x0, x1, t)
    torch.testing.assert_close(xt, a.view(-1, 1, 1, 1) * x1 + s.view(-1, 1, 1, 1) * x0)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[3], x1[3])
    # the target velocity is the time derivative of the path
    h = 1e-6
    tm = t.clamp(h, 1 - h)
    fd = (tr.interpolate(x0, x1, tm + h)[0] - tr.interpolate(x0, x1, tm - h)[0]) / (2 * h)
    torch.testing.assert_close(tr.interpolate(x0, x1, tm)[1], fd, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("path", ["linear", "gvp"])
def test_ode_samplers_with_the_true_velocity_reach_the_data_and_heun_beats_euler(path):
    tr = Transport(path)
    z = torch.randn(N, 1, 2, 2, generator=seed(0))
    exact = MEAN + STD * z  # the flow of Gaussians is this affine map
    errors = {}
    for sampler in ("euler", "heun"):
        x = sit_sample(gaussian_velocity(tr), sampler=sampler, steps=10, transport=tr, latents=z)
        errors[sampler] = (x - exact).abs().max().item()
        if sampler == "heun":
            assert_moments(x, tol_std=0.01)
        else:  # 10 Euler steps are visibly off, but not lost
            assert_moments(x, tol_mean=0.12, tol_std=0.1)
    assert errors["heun"] < errors["euler"] / 5, errors
    assert errors["heun"] < 0.05  # worst of 16000 samples, out to |z| ~ 4


@pytest.mark.parametrize("path", ["linear", "gvp"])
def test_sde_sampler_with_the_true_velocity_reaches_the_data(path):
    tr = Transport(path)
    x = sit_sample(gaussian_velocity(tr), (N, 1, 2, 2), "sde", 100, seed(0), transport=tr)
    assert_moments(x, tol_std=0.03)
    # the noise is real (the result is not the ODE's map of the initial noise) ...
    z = torch.randn(N, 1, 2, 2, generator=seed(0))
    assert (x - (MEAN + STD * z)).abs().mean() > 0.05
    # ... but the last step adds none: a one-step run is that deterministic step alone
    one = [sit_sample(gaussian_velocity(tr), sampler="sde", steps=1, generator=seed(s), transport=tr, latents=z)
           for s in (0, 1)]
    torch.testing.assert_close(one[0], one[1], atol=0, rtol=0)


def test_score_from_velocity_is_the_gaussian_score():
    for path in ("linear", "gvp"):
        tr = Transport(path)
        for t in (0.0, 0.4, 0.9):
            x = torch.linspace(-2, 3, 11, dtype=torch.float64).view(-1, 1, 1, 1)
            a, s, _, _ = tr.coefficients(torch.tensor(t, dtype=torch.float64))
            true_score = -(x - a * MEAN) / (a**2 * STD**2 + s**2)
            v = gaussian_velocity(tr)(x, torch.full((11,), t * tr.time_scale, dtype=torch.float64)).double()
            torch.testing.assert_close(tr.score(v, x, t), true_score, atol=1e-5, rtol=1e-5)


def test_velocity_loss_is_zero_for_the_true_velocity():
    tr = Transport("gvp")
    x1, noise = torch.randn(8, 2, 4, 4) + 2, torch.randn(8, 2, 4, 4)
    t = torch.rand(8, generator=seed(3))
    _, _, da, ds = tr.coefficients(t.view(-1, 1, 1, 1))
    assert tr.loss(lambda x, tt: da * x1 + ds * noise, x1, t=t, noise=noise).item() < 1e-12
    assert tr.loss(lambda x, tt: torch.zeros_like(x), x1, t=t, noise=noise).item() > 1.0


# ------------------------------------------------------------------------------------- DDPM
def true_noise_fn(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """The model that returns ε exactly, recovered from x_t (so it tests the noising formula too)."""
    ac = diffusion.alphas_cumprod.double()

    def true_noise(x_t, t):
        a = ac[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    return true_noise


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_loss_is_zero_when_the_model_returns_the_true_noise(schedule):
    diffusion = GaussianDiffusion(schedule)
    x0 = torch.randn(16, 4, 4, 4, generator=seed(1)).double()
    true_noise = true_noise_fn(diffusion, x0)
    t = torch.tensor([0, 1, 10, 100, 300, 500, 700, 999] * 2)
    assert diffusion.loss(true_noise, x0, generator=seed(2), t=t).item() < 1e-12
    assert diffusion.loss(true_noise, x0, generator=seed(2)).item() < 1e-12  # random steps
    assert diffusion.loss(lambda x, t: torch.zeros_like(x), x0, generator=seed(2)).item() > 0.5


def test_min_snr_weighting_equals_the_weighted_per_example_mse():
    """min-SNR-γ: each example's ε-MSE times min(SNR, γ) / SNR, SNR = ᾱ / (1 - ᾱ); γ = ∞ is plain MSE."""
    x0 = torch.randn(8, 4, 4, 4, generator=seed(3))
    t = torch.tensor([0, 5, 50, 200, 400, 600, 800, 999])
    noise = torch.randn(x0.shape, generator=seed(4))
    wrong = lambda x, tt: torch.full_like(x, 0.3)  # noqa: E731
    plain = GaussianDiffusion("linear")
    weighted = GaussianDiffusion("linear", min_snr_gamma=5.0)
    abar = plain.alphas_cumprod.double()[t]
    snr = abar / (1 - abar)
    per_example = ((0.3 - noise.double()) ** 2).flatten(1).mean(1)
    want = (torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr * per_example).mean()
    assert abs(weighted.loss(wrong, x0, t=t, noise=noise).item() - want.item()) < 1e-5
    assert (weighted.snr_weights(t)[snr > 5] < 1).all() and (weighted.snr_weights(t)[snr <= 5] == 1).all()
    huge = GaussianDiffusion("linear", min_snr_gamma=1e12)
    assert abs(huge.loss(wrong, x0, t=t, noise=noise).item() - plain.loss(wrong, x0, t=t, noise=noise).item()) < 1e-5
    assert weighted.loss(true_noise_fn(weighted, x0.double()), x0.double(), t=t, noise=noise.double()).item() < 1e-10


@pytest.mark.parametrize("gamma", [0, -1.0, "5", float("nan"), True])
def test_bad_min_snr_gamma_is_an_input_error(gamma):
    with pytest.raises(InputError, match="min_snr_gamma"):
        GaussianDiffusion("linear", min_snr_gamma=gamma)


def test_logit_normal_training_times():
    """t = sigmoid(n), n ~ N(0, 1): the logits of the drawn times are standard normal (mean, spread and
    the normal's quartiles), the same generator seed gives the same times, and the loss uses them."""
    transport = Transport("linear", time_sampling="logit-normal")
    t = transport.sample_times(20000, seed(5)).double()
    assert ((t > 0) & (t < 1)).all()
    n = torch.logit(t)
    assert abs(n.mean().item()) < 0.03 and abs(n.std().item() - 1) < 0.03
    quartiles = torch.quantile(n, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    assert torch.allclose(quartiles, torch.tensor([-0.6745, 0.0, 0.6745], dtype=torch.float64), atol=0.04)
    assert torch.equal(transport.sample_times(8, seed(6)), transport.sample_times(8, seed(6)))
    uniform = Transport("linear").sample_times(20000, seed(5))
    assert abs(uniform.mean().item() - 0.5) < 0.01 and abs(uniform.var().item() - 1 / 12) < 0.003
    eps = Transport("linear", train_eps=0.1, time_sampling="logit-normal").sample_times(2000, seed(7))
    assert eps.min() >= 0.1 and eps.max() <= 0.9
    # the loss draws its times with sample_times: the same seed gives the same loss as explicit times
    x1 = torch.randn(6, 4, 4, 4, generator=seed(8))
    model = lambda x, tt: x * (tt / 1000).reshape(-1, 1, 1, 1)  # noqa: E731
    g = seed(9)
    times, noise = transport.sample_times(6, g), torch.randn(x1.shape, generator=g)
    assert torch.equal(transport.loss(model, x1, generator=seed(9)), transport.loss(model, x1, t=times, noise=noise))
    with pytest.raises(InputError, match="time_sampling"):
        Transport("linear", time_sampling="beta")


def test_schedules_are_diffusers_linear_and_squaredcos():
    from diffusers import DDPMScheduler

    lin, cos = GaussianDiffusion("linear"), GaussianDiffusion("cosine")
    torch.testing.assert_close(lin.alphas_cumprod, DDPMScheduler().alphas_cumprod)
    torch.testing.assert_close(cos.alphas_cumprod, DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # Nichol & Dhariwal's ā(t) = f(t) / f(0)
    assert abs(cos.alphas_cumprod[499].item() - f(500) / f(0)) < 2e-3


@pytest.mark.parametrize("scheduler, steps", [("ddim", 50), ("dpm++", 25), ("ddpm", 100)])
def test_schedulers_with_the_exact_eps_recover_the_data_distribution(scheduler, steps):
    diffusion = GaussianDiffusion("cosine" if scheduler == "dpm++" else "linear")
    x = ddpm_sample(gaussian_eps(diffusion), (N, 1, 2, 2), scheduler, steps, seed(0), diffusion=diffusion)
    assert_moments(x, tol_std=0.04)


# ----------------------------------------------------------------------------- guidance / seeds
class Affine(torch.nn.Module):
    """A stand-in denoiser with a condition: out = w x + b[label] (null label = num_classes)."""

    def __init__(self, channels_out=4):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))
        self.b = torch.nn.Parameter(torch.randn(3, channels_out, generator=seed(5)))
        self.calls = 0

    def forward(self, x, t, class_labels=None, drop_condition=None):
        self.calls += 1
        labels = class_labels if drop_condition is None else torch.where(drop_condition, 2, class_labels)
        out = self.w * x.repeat(1, self.b.shape[1] // x.shape[1], 1, 1) + self.b[labels][:, :, None, None]
        return out + t.view(-1, 1, 1, 1) * 1e-3


def test_guidance_scale_one_is_the_conditional_prediction_and_others_extrapolate():
    model = randomize_dit()
    x, t, y = torch.randn(3, 4, 8, 8, generator=seed(1)), torch.tensor([10, 500, 900]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        cond = model(x, t, class_labels=y)
        torch.testing.assert_close(classifier_free_guidance(model, x, t, 1.0, dict(class_labels=y)), cond)
        uncond = model(x, t, class_labels=y, drop_condition=torch.ones(3, dtype=torch.bool))
        guided = classifier_free_guidance(model, x, t, 3.0, dict(class_labels=y))
    # learn_sigma: the 4 ε channels are guided, the 4 variance channels stay conditional
    torch.testing.assert_close(guided[:, :4], uncond[:, :4] + 3.0 * (cond[:, :4] - uncond[:, :4]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided[:, 4:], cond[:, 4:])
    affine = Affine()
    classifier_free_guidance(affine, x, t, 5.0, dict(class_labels=y))
    assert affine.calls == 1  # one batch of 2B
    # a row that is unconditional already (an empty prompt) stays so: guidance leaves it as it is
    some = torch.tensor([False, True, False])
    with torch.no_grad():
        mixed = classifier_free_guidance(model, x, t, 3.0, dict(class_labels=y, drop_condition=some))
    torch.testing.assert_close(mixed[1], uncond[1])
    torch.testing.assert_close(mixed[[0, 2]], guided[[0, 2]])
    with pytest.raises(InputError, match="guidance_scale"):
        classifier_free_guidance(affine, x, t, -1.0, dict(class_labels=y))


def randomize_dit():
    model = DiT(DiTConfig(input_size=8, patch_size=4, in_channels=4, width=32, depth=1, heads=2, num_classes=3,
                          learn_sigma=True))
    g = seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


@pytest.mark.parametrize("kind, sampler", [("ddpm", "ddpm"), ("ddpm", "dpm++"), ("sit", "sde"), ("sit", "heun")])
def test_sampling_is_deterministic_given_a_seed(kind, sampler):
    model, y = Affine(), torch.tensor([0, 1])
    run = (lambda s: ddpm_sample(model, (2, 4, 3, 3), sampler, 8, seed(s), 2.0, dict(class_labels=y))) if kind == "ddpm" \
        else (lambda s: sit_sample(model, (2, 4, 3, 3), sampler, 8, seed(s), 2.0, dict(class_labels=y)))
    a, b, c = run(0), run(0), run(1)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("call, match", [
    (lambda: ddpm_sample(Affine(), (1, 4, 2, 2), "euler", 5), "scheduler"),
    (lambda: ddpm_sample(Affine(), (1, 4, 2, 2), "ddim", 0), "steps"),
    (lambda: ddpm_sample(Affine(), (1, 4, 2, 2), "ddim", 1001), "steps"),
    (lambda: sit_sample(Affine(), (1, 4, 2, 2), "rk4", 5), "sampler"),
    (lambda: sit_sample(Affine(), (1, 4, 2, 2), "sde", 5, diffusion_form="SBDM"), "diffusion_form"),
    (lambda: sit_sample(Affine(), (1, 4, 2, 2), "heun", 5, guidance_scale=float("nan")), "guidance_scale"),
    (lambda: sit_sample(Affine(), (1, 0, 2, 2), "heun", 5), "shape"),
    (lambda: GaussianDiffusion("sigmoid"), "schedule"),
    (lambda: Transport("vp"), "path"),
])
def test_bad_sampler_arguments_are_input_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ------------------------------------------------------------------------------ tiny training
def toy_batch(g: torch.Generator, batch: int = 16):
    """Two classes: latents near +1 (class 0) or near -1 (class 1)."""
    y = torch.randint(0, 2, (batch,), generator=g)
    x = (1 - 2 * y.float()).view(-1, 1, 1, 1) + 0.1 * torch.randn(batch, 2, 4, 4, generator=g)
    return x, y


@pytest.mark.parametrize("objective", ["ddpm", "sit"])
def test_tiny_dit_learns_a_two_class_toy_problem(objective):
    torch.manual_seed(0)
    model = DiT(DiTConfig(input_size=4, patch_size=2, in_channels=2, width=32, depth=2, heads=2, num_classes=2))
    obj = GaussianDiffusion() if objective == "ddpm" else Transport()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g, losses = seed(0), []
    for _ in range(100):
        x, y = toy_batch(g)
        loss = obj.loss(model, x, dict(class_labels=y), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)
    if objective == "sit":  # and it follows the label: samples land on the right side
        model.eval()
        y = torch.tensor([0] * 4 + [1] * 4)
        out = sit_sample(model, (8, 2, 4, 4), "heun", 8, seed(1), 2.0, dict(class_labels=y))
        means = out.mean(dim=(1, 2, 3))
        assert (means[:4] > 0.5).all() and (means[4:] < -0.5).all(), means
