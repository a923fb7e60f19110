"""Ditto's diffusion sampling: cosine noise schedule and guided DDIM (eta = 1) for the LMDM.

Everything here follows ``ditto-audio2motion.md`` §6: a 1000-step cosine
schedule (float64 betas, float32 cumulative products), S sampling steps
at the truncated times of ``linspace(−1, 999, S + 1)``, and the update
``x ← x₀·√ᾱ' + c·ε + σ·z`` with classifier-free guided x₀ (weight 2).

Randomness is explicit: the per-step noises z are drawn once per sampler and
reused for every window (as Ditto does), a fresh initial noise x_T is drawn
per window; both come from the sampler's own ``torch.Generator`` (seedable) or
can be injected (the golden fixtures rely on that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from ....errors import TalkingHeadError
from ....models.lmdm import LMDM

NUM_DIFFUSION_STEPS = 1000
"""Length T of the training noise schedule."""

COSINE_OFFSET = 0.008
"""Offset s of the cosine schedule."""

MAX_BETA = 0.999
"""Upper clip of the per-step betas (reached at t = 999)."""

class DiffusionError(TalkingHeadError):
    """Sampling cannot give finite motion (unusable step count, or NaN/inf in the result)."""


@dataclass(frozen=True)
class NoiseSchedule:
    """The training noise schedule and the tables derived from it.

    Attributes:
        betas: (T,) float64 per-step noise variances, clipped to [0, 0.999].
        alphas_cumprod: (T,) float32 ᾱ_t = Π_{i≤t} (1 − float32(β_i)).
        recip_sqrt_one_minus: (T,) float32 A_t = √(1/(1 − ᾱ_t)).
        sqrt_recip_minus_one: (T,) float32 B_t = √(1/ᾱ_t − 1).
    """

    betas: Tensor
    alphas_cumprod: Tensor
    recip_sqrt_one_minus: Tensor
    sqrt_recip_minus_one: Tensor

    def predict_noise(self, x_t: Tensor, x_start: Tensor, t: Tensor) -> Tensor:
        """Noise ε implied by a clean-motion prediction: ``A_t·x_t − x₀/B_t`` (spec §5).

        Args:
            x_t: (B, ...) float32 noisy input at steps ``t``.
            x_start: x₀ prediction, same shape.
            t: (B,) int64 steps in [0, T − 1].
        """
        shape = (-1,) + (1,) * (x_t.dim() - 1)
        index = t.cpu()
        a = self.recip_sqrt_one_minus[index].to(x_t.device).view(shape)
        b = self.sqrt_recip_minus_one[index].to(x_t.device).view(shape)
        return a * x_t - x_start / b


def _sqrt_f32(x: Tensor) -> Tensor:
    """Correctly rounded float32 square root, independent of the CPU's vectorised ``sqrt``."""
    return x.double().sqrt().float()


def cosine_schedule(num_steps: int = NUM_DIFFUSION_STEPS, offset: float = COSINE_OFFSET) -> NoiseSchedule:
    """Ditto's cosine schedule (spec §6; Nichol & Dhariwal's improved DDPM).

    In float64: ``g(i) = cos²(((i/T + s)/(1 + s))·π/2)``, ``ᾱ'(i) = g(i)/g(0)``,
    ``β_i = 1 − ᾱ'(i+1)/ᾱ'(i)`` clipped to [0, 0.999]; then in float32
    ``ᾱ = cumprod(1 − float32(β))``.  ᾱ_0 = 0.9999587, ᾱ_999 = 2.43e−9.
    """
    steps = torch.arange(num_steps + 1, dtype=torch.float64)
    g = torch.cos((steps / num_steps + offset) / (1 + offset) * math.pi / 2).pow(2)
    g = g / g[0]
    betas = (1 - g[1:] / g[:-1]).clamp(0, MAX_BETA)
    alphas_cumprod = torch.cumprod(1.0 - betas.float(), dim=0)
    return NoiseSchedule(
        betas=betas,
        alphas_cumprod=alphas_cumprod,
        recip_sqrt_one_minus=_sqrt_f32(1.0 / (1.0 - alphas_cumprod)),
        sqrt_recip_minus_one=_sqrt_f32(1.0 / alphas_cumprod - 1),
    )


def sampling_times(steps: int, num_train_steps: int = NUM_DIFFUSION_STEPS) -> list[tuple[int, int]]:
    """Pairs (t, t_next) visited by S sampling steps, the last ending at −1 (spec §6).

    The float32 ``linspace(−1, T − 1, S + 1)`` truncated toward zero and
    reversed: S = 10 → (999, 899), (899, 799), …, (99, −1).

    Raises:
        DiffusionError: S outside [1, T].
    """
    if not 1 <= steps <= num_train_steps:
        raise DiffusionError(
            f"diffusion sampling steps must be between 1 and {num_train_steps}, got {steps}; "
            "use 10 (Ditto's default for streaming) or 50."
        )
    times = torch.linspace(-1, num_train_steps - 1, steps + 1).int().tolist()[::-1]
    return list(zip(times[:-1], times[1:]))


@dataclass(frozen=True)
class StepCoefficients:
    """Per-step DDIM coefficients of S sampling steps (the last step has none).

    Attributes:
        times: (S,) int64 diffusion step t of every sampling step.
        alpha_next_sqrt: (S−1,) float32 √ᾱ_{t_next}.
        c: (S−1,) float32 √(1 − ᾱ_{t_next} − σ²), the weight of the predicted
            noise; NaN where Ditto's float32 evaluation can be NaN (see
            :func:`ddim_coefficients`).
        sigma: (S−1,) float32 σ, the weight of the fresh noise z.
    """

    times: Tensor
    alpha_next_sqrt: Tensor
    c: Tensor
    sigma: Tensor


def ddim_coefficients(schedule: NoiseSchedule, steps: int) -> StepCoefficients:
    """DDIM (eta = 1) coefficients for S steps, in float32 and in Ditto's operation order (spec §6).

    With α = ᾱ_t, α' = ᾱ_{t_next}: ``σ = √((1 − α/α')·(1 − α')/(1 − α))``,
    ``c = √(1 − α' − σ²)``.  At the first step α ≈ 2.4e−9, so σ² ≈ 1 − α'
    and c² is float32 rounding noise whose sign depends on the last bit of σ.
    Square-root implementations differ in that bit (Ditto's reference run
    gives NaN for S = 5, see the fixture README), so c is set to NaN wherever
    σ rounded *up* (the larger value a faithfully rounded square root can
    return) makes c² negative.  That rejects S ∈ {3, 4, 5, 7} (up to 200) on
    every machine and keeps Ditto's values (rounding noise included) elsewhere.

    Raises:
        DiffusionError: S outside [1, 1000].
    """
    pairs = sampling_times(steps, len(schedule.alphas_cumprod))
    moving = [(t, t_next) for t, t_next in pairs if t_next >= 0]
    alpha = schedule.alphas_cumprod[[t for t, _ in moving]]
    alpha_next = schedule.alphas_cumprod[[t_next for _, t_next in moving]]
    sigma_sq = (1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)
    sigma = _sqrt_f32(sigma_sq)
    rounded_down = sigma.double() ** 2 < sigma_sq.double()  # exact: both sides fit in float64
    sigma_up = torch.where(rounded_down, torch.nextafter(sigma, torch.tensor(math.inf)), sigma)
    unstable = (1 - alpha_next - sigma_up * sigma_up) < 0
    c = torch.where(unstable, torch.tensor(math.nan), _sqrt_f32(1 - alpha_next - sigma * sigma))
    return StepCoefficients(
        times=torch.tensor([t for t, _ in pairs], dtype=torch.int64),
        alpha_next_sqrt=_sqrt_f32(alpha_next),
        c=c,
        sigma=sigma,
    )


class SamplingStep(NamedTuple):
    """One DDIM step, as passed to the ``on_step`` callback of :meth:`DDIMSampler.sample`.

    Attributes:
        index: step number i in [0, S).
        t: diffusion step of the network call.
        x_in: (B, L, F) network input x_t.
        x_start: (B, L, F) guided x₀ prediction.
        pred_noise: (B, L, F) noise ε implied by x₀.
        x_next: (B, L, F) input of the next step; for the last step, the result (= x₀).
    """

    index: int
    t: int
    x_in: Tensor
    x_start: Tensor
    pred_noise: Tensor
    x_next: Tensor


class DDIMSampler:
    """Guided DDIM (eta = 1) sampling of 80-frame motion windows with the LMDM (spec §6).

    The S − 1 step noises z are drawn once, here, from the sampler's generator
    (or injected) and reused for every window; :meth:`initial_noise` then
    draws one x_T per window from the same generator.  Create a new sampler to
    change S.

    Args:
        model: the denoiser (eval mode); its config gives L, F and C.
        steps: S sampling steps (Ditto: 10 streaming, 50 offline default).
        seed: seed of the sampler's generator; ``None`` picks a random seed.
        step_noise: (S − 1, 1, L, F) float32 step noises to use instead of
            drawing them (e.g. the fixtures' ``ddim.step_noise``).

    Raises:
        DiffusionError: S outside [1, 1000] or a step count whose coefficient
            table holds NaN (S = 3, 4, 5, 7).
        ValueError: ``step_noise`` of the wrong shape.
    """

    def __init__(self, model: LMDM, steps: int = 10, seed: int | None = None, step_noise: Tensor | None = None) -> None:
        self.model = model
        self.schedule = cosine_schedule()
        self.coefficients = ddim_coefficients(self.schedule, steps)
        if self.coefficients.c.isnan().any():
            raise DiffusionError(
                f"{steps} diffusion sampling steps give a NaN coefficient in Ditto's float32 schedule "
                "(the first step's noise weight is rounding noise); use 10 or 50 steps instead."
            )
        self.steps = steps
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.window_shape = (1, model.config.seq_len, model.config.motion_dim)
        self.step_noise = self._draw(steps - 1) if step_noise is None else self._checked_step_noise(step_noise)

    def _draw(self, count: int) -> Tensor:
        return torch.randn((count, *self.window_shape), generator=self.generator, device=self.device)

    def _checked_step_noise(self, step_noise: Tensor) -> Tensor:
        expected = (self.steps - 1, *self.window_shape)
        if tuple(step_noise.shape) != expected:
            raise ValueError(
                f"step_noise must have shape {expected} for {self.steps} steps, got {tuple(step_noise.shape)}"
            )
        return step_noise.to(self.device, torch.float32)

    def initial_noise(self) -> Tensor:
        """A fresh (1, L, F) standard-normal x_T from the sampler's generator."""
        return self._draw(1)[0]

    @torch.inference_mode()
    def predict(self, x_t: Tensor, cond_frame: Tensor, cond: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Guided x₀ and the implied noise ε for one step.

        Args:
            x_t: (B, L, F) float32 noisy window.
            cond_frame: (B, F) float32 previous motion frame.
            cond: (B, L, C) float32 per-frame condition.
            t: (B,) int64 diffusion steps.

        Returns:
            (x_start, pred_noise), both (B, L, F) float32.  No clamping of x₀.
        """
        x_start = self.model.guided(x_t, cond_frame, cond, t)
        return x_start, self.schedule.predict_noise(x_t, x_start, t)

    @torch.inference_mode()
    def sample(self, cond_frame: Tensor, cond: Tensor, x_T: Tensor | None = None,
               on_step: Callable[[SamplingStep], None] | None = None) -> Tensor:
        """Sample one clean motion window (Ditto's ``ddim_sample``).

        Args:
            cond_frame: (B, F) float32 motion frame preceding the window.
            cond: (B, L, C) float32 per-frame condition of the window.
            x_T: (B, L, F) initial noise; ``None`` draws it (:meth:`initial_noise`, B = 1).
            on_step: called with every :class:`SamplingStep` (progress, tracing).

        Returns:
            (B, L, F) float32 motion window (spec §4 layout).

        Raises:
            DiffusionError: the result contains NaN or infinity.
            ValueError: inputs of the wrong shape.
        """
        x = self.initial_noise() if x_T is None else x_T.to(self.device, torch.float32)
        cond_frame, cond = cond_frame.to(self.device, torch.float32), cond.to(self.device, torch.float32)
        self._check_inputs(x, cond_frame, cond)
        c = self.coefficients
        for i, t in enumerate(c.times.tolist()):
            time = torch.full((x.shape[0],), t, dtype=torch.int64, device=self.device)
            x_start, pred_noise = self.predict(x, cond_frame, cond, time)
            if i < self.steps - 1:
                x_next = x_start * c.alpha_next_sqrt[i] + c.c[i] * pred_noise + c.sigma[i] * self.step_noise[i]
            else:
                x_next = x_start
            if on_step is not None:
                on_step(SamplingStep(i, t, x, x_start, pred_noise, x_next))
            x = x_next
        if not torch.isfinite(x).all():
            raise DiffusionError(
                "diffusion sampling produced NaN/inf motion; the audio features or the LMDM weights "
                "contain invalid values (re-download lmdm_v0.4_hubert.pth if this persists)."
            )
        return x

    def _check_inputs(self, x: Tensor, cond_frame: Tensor, cond: Tensor) -> None:
        cfg = self.model.config
        batch = x.shape[0]
        expected = {
            "x_T": ((batch, cfg.seq_len, cfg.motion_dim), x),
            "cond_frame": ((batch, cfg.motion_dim), cond_frame),
            "cond": ((batch, cfg.seq_len, cfg.cond_dim), cond),
        }
        for name, (shape, value) in expected.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
