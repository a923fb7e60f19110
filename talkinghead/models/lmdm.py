"""Ditto's LMDM: the transformer that denoises 80-frame windows of LivePortrait motion.

The network of ``lmdm_v0.4_hubert.pth`` (spec ``ditto-audio2motion.md`` §5, §9):
given a noisy motion window ``x_t`` (B, 80, 265), the previous motion frame
``cond_frame`` (B, 265), the per-frame audio/emotion/eye/keypoint condition
``cond`` (B, 80, 1103) and the diffusion step ``t`` (B,), it predicts the clean
window x₀ (B, 80, 265).  The 265-d motion layout is spec §4
(``[scale − 1 | pitch 66 | yaw 66 | roll 66 | t 3 | exp 63]``).

Structure (pre-norm everywhere, LayerNorm eps 1e−5, exact-erf GELU):

* time: sinusoidal embedding → ``time_mlp`` (Linear, Mish) → ``to_time_cond``
  (the FiLM input) and ``to_time_tokens`` (two cross-attention tokens);
* condition: ``cond_projection`` → ``cond_encoder`` (self-attention layers)
  → condition tokens, and their mean → ``non_attn_cond_projection``, added to
  the FiLM input; dropping the condition (classifier-free guidance) swaps both
  for the learned ``null_cond_embed`` / ``null_cond_hidden``;
* motion: ``input_projection`` of ``[x_t | cond_frame]`` → ``seqTransDecoder``
  (self-attention, cross-attention on ``norm_cond([condition tokens ; time
  tokens])``, feed-forward; every branch FiLM-modulated) → ``final_layer``.

Positions enter only through a rotary embedding applied to the attention
*inputs* (queries and keys, never values); the time tokens sit at positions
80 and 81 of the cross-attention memory.  Parameter names, shapes and order
equal the checkpoint's (``tests/data/fixtures/ditto/manifest.json``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsError
from ..weights_strict import load_state_dict_strict

GUIDANCE_WEIGHT = 2.0
"""Classifier-free guidance weight, a constant in Ditto's wrapper (spec §5)."""

_TIME_EMBEDDING_BASE = 10000.0
_ROTARY_BASE = 10000.0
_NUM_TIME_TOKENS = 2


@dataclass(frozen=True)
class LMDMConfig:
    """Dimensions of the LMDM (defaults: the released ``lmdm_v0.4_hubert.pth``).

    Attributes:
        motion_dim: F, width of a motion frame (265, spec §4).
        cond_dim: C, width of a per-frame condition (1103 = HuBERT 1024 +
            emotion 8 + eye openness 2 + eye ball 6 + canonical keypoints 63, spec §3).
        seq_len: L, frames per window (80); fixed by ``null_cond_embed``.
        latent_dim: D, transformer width (512).
        ff_dim: feed-forward width (1024).
        num_layers: decoder layers (8).
        num_cond_layers: condition-encoder layers (2).
        num_heads: attention heads (8); not readable from the checkpoint.
    """

    motion_dim: int = 265
    cond_dim: int = 1103
    seq_len: int = 80
    latent_dim: int = 512
    ff_dim: int = 1024
    num_layers: int = 8
    num_cond_layers: int = 2
    num_heads: int = 8

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Tensor], num_heads: int = 8) -> "LMDMConfig":
        """Read every dimension the checkpoint determines (spec §5.1).

        Args:
            state_dict: the ``model_state_dict`` of the checkpoint (no prefix).
            num_heads: attention heads; the tensors do not tell (Ditto: 8).

        Raises:
            WeightsError: when a tensor needed to read the dimensions is
                missing or the shapes disagree with each other.
        """
        try:
            latent_dim, double_motion = state_dict["input_projection.weight"].shape
            config = cls(
                motion_dim=int(state_dict["final_layer.weight"].shape[0]),
                cond_dim=int(state_dict["cond_projection.weight"].shape[1]),
                seq_len=int(state_dict["null_cond_embed"].shape[1]),
                latent_dim=int(latent_dim),
                ff_dim=int(state_dict["cond_encoder.0.linear1.weight"].shape[0]),
                num_layers=_count_layers(state_dict, "seqTransDecoder.stack."),
                num_cond_layers=_count_layers(state_dict, "cond_encoder."),
                num_heads=num_heads,
            )
        except (KeyError, ValueError) as exc:
            raise WeightsError(
                f"LMDM checkpoint lacks a tensor needed to read its dimensions ({exc}); "
                "the file is not Ditto's lmdm_v0.4_hubert.pth or is corrupt, download it again."
            ) from exc
        if double_motion != 2 * config.motion_dim or config.latent_dim % num_heads:
            raise WeightsError(
                f"LMDM checkpoint shapes disagree: input_projection takes {double_motion} values for "
                f"{config.motion_dim}-d motion, width {config.latent_dim} with {num_heads} heads; "
                "the file is not Ditto's lmdm_v0.4_hubert.pth."
            )
        return config


def _count_layers(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    if not indices:
        raise KeyError(prefix + "0")
    return max(indices) + 1


class TimeConditioning(NamedTuple):
    """Diffusion-step conditioning of one forward pass.

    Attributes:
        film: (B, D) ``to_time_cond`` output, before the pooled condition is added.
        tokens: (B, 2, D) the two time tokens appended to the cross-attention memory.
    """

    film: Tensor
    tokens: Tensor


class ConditionEncoding(NamedTuple):
    """Encoded (or null) condition of one forward pass.

    Attributes:
        tokens: (B, L, D) condition tokens for the cross-attention memory.
        pooled: (B, D) pooled condition vector added to the FiLM input.
    """

    tokens: Tensor
    pooled: Tensor


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style embedding of integer diffusion steps (spec §5 step 1).

    ``f_k = exp(−k·ln(10000)/(D/2 − 1))``, ``a = t·f``; output ``[sin a | cos a]``
    (sine block first).  Computed in float32 in this order, which matters at
    t = 999 (arguments up to 999 rad).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        """(B,) int64 steps in [0, 999] → (B, D) float32."""
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(_TIME_EMBEDDING_BASE) / (half - 1)))
        angles = t[:, None] * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on the feature axis of attention inputs (spec §5 step 4).

    The pair ``(v[2j], v[2j+1])`` at sequence position p is rotated by
    ``p·ω_j``, ``ω_j = 10000^(−2j/D)``.  ``freqs`` (D/2,) float32 is a buffer
    stored in the checkpoint under every layer that uses it.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("freqs", 1.0 / (_ROTARY_BASE ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, x: Tensor) -> Tensor:
        """Rotate (B, N, D) inputs by their positions 0..N−1; same shape out."""
        positions = torch.arange(x.shape[-2], device=x.device, dtype=self.freqs.dtype)
        angles = (positions[:, None] * self.freqs[None, :]).repeat_interleave(2, dim=-1).to(x.dtype)
        pairs = x.unflatten(-1, (-1, 2))
        rotated_pairs = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return x * angles.cos() + rotated_pairs * angles.sin()


class Attention(nn.Module):
    """Multi-head scaled dot-product attention with PyTorch's packed projection layout.

    ``in_proj_weight`` (3D, D) rows 0..D−1 / D..2D−1 / 2D..3D−1 project the
    query / key / value inputs (with ``in_proj_bias``); heads are concatenated
    and mapped by ``out_proj`` (D, D).  No mask, softmax scale 1/√(D/heads).
    Key names equal ``nn.MultiheadAttention``'s.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """Attend (B, Nq, D) queries over (B, Nk, D) keys/values → (B, Nq, D)."""
        weights = self.in_proj_weight.chunk(3)
        biases = self.in_proj_bias.chunk(3)
        q, k, v = (self._split_heads(F.linear(x, w, b)) for x, w, b in zip((query, key, value), weights, biases))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def _split_heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)


class FiLM(nn.Module):
    """Feature-wise modulation ``(1 + s)·y + b`` with ``[s | b] = Linear(Mish(film))`` (spec §5 step 5)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Mish(), nn.Linear(dim, 2 * dim))

    def forward(self, y: Tensor, film: Tensor) -> Tensor:
        """Modulate (B, N, D) features by the (B, D) FiLM input; same shape out."""
        scale, shift = self.block(film)[:, None, :].chunk(2, dim=-1)
        return (scale + 1) * y + shift


def _feed_forward(x: Tensor, linear1: nn.Linear, linear2: nn.Linear) -> Tensor:
    return linear2(F.gelu(linear1(x)))


def _rotary_self_attention(attention: Attention, rotary: RotaryEmbedding, x: Tensor) -> Tensor:
    rotated = rotary(x)
    return attention(rotated, rotated, x)


class ConditionEncoderLayer(nn.Module):
    """Pre-norm self-attention encoder layer of the condition tokens (``cond_encoder.i``).

    ``y = y + SA(LN1 y); y = y + FF(LN2 y)``, with rotary positions on the
    attention queries and keys.
    """

    def __init__(self, config: LMDMConfig, rotary: RotaryEmbedding) -> None:
        super().__init__()
        d = config.latent_dim
        self.self_attn = Attention(d, config.num_heads)
        self.linear1 = nn.Linear(d, config.ff_dim)
        self.linear2 = nn.Linear(config.ff_dim, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.rotary = rotary

    def forward(self, y: Tensor) -> Tensor:
        """(B, L, D) → (B, L, D)."""
        y = y + _rotary_self_attention(self.self_attn, self.rotary, self.norm1(y))
        return y + _feed_forward(self.norm2(y), self.linear1, self.linear2)


class FiLMDecoderLayer(nn.Module):
    """Pre-norm decoder layer with FiLM on every branch (``seqTransDecoder.stack.i``).

    ``x += Φ1(SA(LN1 x)); x += Φ2(CA(LN2 x, memory)); x += Φ3(FF(LN3 x))``.
    Rotary positions: self-attention queries/keys; cross-attention queries
    (positions 0..L−1) and memory keys (0..L+1), never the values.
    """

    def __init__(self, config: LMDMConfig, rotary: RotaryEmbedding) -> None:
        super().__init__()
        d = config.latent_dim
        self.self_attn = Attention(d, config.num_heads)
        self.multihead_attn = Attention(d, config.num_heads)
        self.linear1 = nn.Linear(d, config.ff_dim)
        self.linear2 = nn.Linear(config.ff_dim, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.film1 = FiLM(d)
        self.film2 = FiLM(d)
        self.film3 = FiLM(d)
        self.rotary = rotary

    def forward(self, x: Tensor, memory: Tensor, film: Tensor) -> Tensor:
        """(B, L, D) motion tokens, (B, L+2, D) memory, (B, D) FiLM input → (B, L, D)."""
        x = x + self.film1(_rotary_self_attention(self.self_attn, self.rotary, self.norm1(x)), film)
        cross = self.multihead_attn(self.rotary(self.norm2(x)), self.rotary(memory), memory)
        x = x + self.film2(cross, film)
        return x + self.film3(_feed_forward(self.norm3(x), self.linear1, self.linear2), film)


class DecoderStack(nn.Module):
    """The decoder layers in order (``seqTransDecoder.stack``)."""

    def __init__(self, config: LMDMConfig, rotary: RotaryEmbedding) -> None:
        super().__init__()
        self.stack = nn.ModuleList(FiLMDecoderLayer(config, rotary) for _ in range(config.num_layers))

    def forward(self, x: Tensor, memory: Tensor, film: Tensor) -> Tensor:
        """(B, L, D), (B, L+2, D), (B, D) → (B, L, D)."""
        for layer in self.stack:
            x = layer(x, memory, film)
        return x


class LMDM(nn.Module):
    """Ditto's motion denoiser (spec §5): predicts the clean motion window x₀.

    Build it from a checkpoint with :meth:`from_state_dict`.  Inference only
    (dropout of the original is omitted; call in eval mode, no autograd needed).
    """

    def __init__(self, config: LMDMConfig = LMDMConfig()) -> None:
        super().__init__()
        self.config = config
        d, length = config.latent_dim, config.seq_len
        self.null_cond_embed = nn.Parameter(torch.zeros(1, length, d))
        self.null_cond_hidden = nn.Parameter(torch.zeros(1, d))
        self.rotary = RotaryEmbedding(d)
        self.time_mlp = nn.Sequential(SinusoidalTimeEmbedding(d), nn.Linear(d, 4 * d), nn.Mish())
        self.to_time_cond = nn.Sequential(nn.Linear(4 * d, d))
        self.to_time_tokens = nn.Sequential(
            nn.Linear(4 * d, _NUM_TIME_TOKENS * d), nn.Unflatten(1, (_NUM_TIME_TOKENS, d))
        )
        self.norm_cond = nn.LayerNorm(d)
        self.input_projection = nn.Linear(2 * config.motion_dim, d)
        self.cond_encoder = nn.Sequential(
            *(ConditionEncoderLayer(config, self.rotary) for _ in range(config.num_cond_layers))
        )
        self.cond_projection = nn.Linear(config.cond_dim, d)
        self.non_attn_cond_projection = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.seqTransDecoder = DecoderStack(config, self.rotary)
        self.final_layer = nn.Linear(d, config.motion_dim)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Tensor], source: str, num_heads: int = 8) -> "LMDM":
        """Build the network the checkpoint describes and load it strictly (eval mode).

        Args:
            state_dict: ``checkpoint["model_state_dict"]`` of ``lmdm_v0.4_hubert.pth``
                (spec §9), float32.
            source: where the tensors came from, for error messages.
            num_heads: attention heads (not stored in the file; Ditto: 8).

        Raises:
            WeightsError: missing, unexpected or mis-shaped tensors.
        """
        model = cls(LMDMConfig.from_state_dict(state_dict, num_heads=num_heads))
        load_state_dict_strict(model, state_dict, source)
        return model.eval()

    def embed_time(self, t: Tensor) -> TimeConditioning:
        """Diffusion steps (B,) int64 in [0, 999] → FiLM input (B, D) and time tokens (B, 2, D)."""
        hidden = self.time_mlp(t)
        return TimeConditioning(self.to_time_cond(hidden), self.to_time_tokens(hidden))

    def encode_condition(self, cond: Tensor) -> ConditionEncoding:
        """Per-frame condition (B, L, C) → condition tokens (B, L, D) and pooled vector (B, D)."""
        tokens = self.cond_encoder(self.cond_projection(cond))
        return ConditionEncoding(tokens, self.non_attn_cond_projection(tokens.mean(dim=1)))

    def null_condition(self, batch: int) -> ConditionEncoding:
        """The learned stand-ins used when the condition is dropped (guidance's unconditional branch)."""
        return ConditionEncoding(
            self.null_cond_embed.expand(batch, -1, -1), self.null_cond_hidden.expand(batch, -1)
        )

    def project_motion(self, x_t: Tensor, cond_frame: Tensor) -> Tensor:
        """Noisy window (B, L, F) and previous frame (B, F) → motion tokens (B, L, D)."""
        frames = cond_frame[:, None, :].expand(-1, x_t.shape[1], -1)
        return self.input_projection(torch.cat((x_t, frames), dim=-1))

    def decode(self, motion: Tensor, time: TimeConditioning, condition: ConditionEncoding) -> Tensor:
        """Motion tokens (B, L, D) with their time and condition encodings → x₀ (B, L, F)."""
        film = time.film + condition.pooled
        memory = self.norm_cond(torch.cat((condition.tokens, time.tokens), dim=1))
        return self.final_layer(self.seqTransDecoder(motion, memory, film))

    def forward(
        self, x_t: Tensor, cond_frame: Tensor, cond: Tensor, t: Tensor, drop_condition: bool = False
    ) -> Tensor:
        """One denoiser call.

        Args:
            x_t: (B, L, F) float32 noisy motion window (spec §4 layout).
            cond_frame: (B, F) float32 motion frame preceding the window.
            cond: (B, L, C) float32 per-frame condition (spec §3).
            t: (B,) int64 diffusion steps in [0, 999].
            drop_condition: use the null condition (unconditional branch).

        Returns:
            (B, L, F) float32 prediction of the clean window x₀.
        """
        condition = self.null_condition(x_t.shape[0]) if drop_condition else self.encode_condition(cond)
        return self.decode(self.project_motion(x_t, cond_frame), self.embed_time(t), condition)

    def guided(
        self, x_t: Tensor, cond_frame: Tensor, cond: Tensor, t: Tensor, guidance_weight: float = GUIDANCE_WEIGHT
    ) -> Tensor:
        """Classifier-free guided x₀: ``uncond + w·(cond − uncond)`` (spec §5, w = 2).

        Same arguments and result shapes as :meth:`forward`.  The time and
        motion encodings are shared by both branches; the decoder runs once per
        branch (batching the two changes the float32 rounding).
        """
        time = self.embed_time(t)
        motion = self.project_motion(x_t, cond_frame)
        conditioned = self.decode(motion, time, self.encode_condition(cond))
        unconditioned = self.decode(motion, time, self.null_condition(x_t.shape[0]))
        return unconditioned + (conditioned - unconditioned) * guidance_weight
