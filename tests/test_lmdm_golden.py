"""Ditto LMDM, DDIM sampler and window loops against ``tests/data/fixtures/ditto`` goldens.

Weights: fill rule v1 on the manifest (``files[0]``), ``rotary.freqs`` overridden
by the analytic constant, digest checked.  Tolerance (fixture README): per
tensor max|a − b| ≤ 2e−5 · max|reference|; schedule tables 1e−6 absolute
(c[0]: 5e−5).  The window-loop tests replay the golden per-window predictions
(the sampler itself is covered by the full 10-step DDIM test) except one
end-to-end offline run with the real sampler.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from conftest import DITTO_FIXTURES, assert_close, load_golden
from talkinghead.drivers.audio.ditto.diffusion import (
    DDIMSampler,
    DiffusionError,
    SamplingStep,
    cosine_schedule,
    ddim_coefficients,
    sampling_times,
)
from talkinghead.drivers.audio.ditto.windows import (
    MotionChunk,
    WindowConfig,
    WindowRecord,
    clip_motion,
    generate_offline,
    smooth_window,
    stream_online,
)
from talkinghead.errors import WeightsError
from talkinghead.models.lmdm import LMDM, LMDMConfig
from talkinghead.weights_strict import load_state_dict_strict

REL_TOL = 2e-5
SCHEDULE_TOL = 1e-6
C0_TOL = 5e-5


def assert_rel(actual: Tensor, expected: Tensor, what: str) -> None:
    """max|a − e| ≤ 2e−5 · max|e| (fixture README)."""
    assert_close(actual, expected, atol=REL_TOL * expected.abs().max().item(), what=what)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DITTO_FIXTURES / "manifest.json").read_text())


@pytest.fixture(scope="module")
def inputs() -> dict[str, Tensor]:
    return load_golden(DITTO_FIXTURES / "inputs.safetensors")


@pytest.fixture(scope="module")
def state_dict(fill_weights, manifest, inputs) -> dict[str, Tensor]:
    entry = manifest["files"][0]
    sub = entry["sub_dicts"][0]
    filled = fill_weights.fill_manifest_file(entry)[sub["key"]]
    for tensor in sub["tensors"]:
        if tensor.get("override") == "analytic_rotary_freqs":
            filled[tensor["name"]] = inputs["const.rotary_freqs"].clone()
    assert fill_weights.state_dict_digest(filled) == entry["fill_digest_sha256"]
    return filled


@pytest.fixture(scope="module")
def lmdm(state_dict) -> LMDM:
    return LMDM.from_state_dict(state_dict, source="fill-rule-v1:lmdm_v0.4_hubert.pth")


@pytest.fixture(scope="module")
def golden_forward() -> dict[str, Tensor]:
    return load_golden(DITTO_FIXTURES / "golden_forward.safetensors")


@pytest.fixture(scope="module")
def golden_ddim() -> dict[str, Tensor]:
    return load_golden(DITTO_FIXTURES / "golden_ddim.safetensors")


@pytest.fixture(scope="module")
def golden_windows() -> dict[str, Tensor]:
    return load_golden(DITTO_FIXTURES / "golden_windows.safetensors")


# --------------------------------------------------------------------------- weights
def test_state_dict_layout_matches_checkpoint(lmdm, manifest, state_dict):
    tensors = manifest["files"][0]["sub_dicts"][0]["tensors"]
    ours = lmdm.state_dict()
    assert list(ours) == [t["name"] for t in tensors]
    assert [list(v.shape) for v in ours.values()] == [t["shape"] for t in tensors]
    cfg = manifest["files"][0]["config"]
    assert lmdm.config == LMDMConfig(
        motion_dim=cfg["nfeats"], cond_dim=cfg["cond_feature_dim"], seq_len=cfg["seq_len"],
        latent_dim=cfg["latent_dim"], ff_dim=cfg["ff_size"], num_layers=cfg["num_layers"],
        num_cond_layers=cfg["cond_encoder_layers"], num_heads=cfg["num_heads"],
    )
    # A fresh network already holds the analytic rotary frequencies of the real file.
    assert torch.equal(LMDM().rotary.freqs, state_dict["rotary.freqs"])


def test_incomplete_checkpoint_is_a_weights_error(state_dict):
    broken = {k: v for k, v in state_dict.items() if k != "final_layer.weight"}
    with pytest.raises(WeightsError, match="final_layer.weight"):
        LMDM.from_state_dict(broken, source="broken.pth")
    with pytest.raises(WeightsError, match="unexpected key"):
        load_state_dict_strict(LMDM(), {**state_dict, "extra.weight": torch.zeros(1)}, "extra.pth")


# --------------------------------------------------------------------------- forward
TAPS = {
    "sinusoidal_emb": lambda m: m.time_mlp[0],
    "time_mlp": lambda m: m.time_mlp,
    "to_time_cond": lambda m: m.to_time_cond,
    "to_time_tokens": lambda m: m.to_time_tokens,
    "cond_projection": lambda m: m.cond_projection,
    "cond_encoder_layer.0": lambda m: m.cond_encoder[0],
    "cond_encoder_layer.1": lambda m: m.cond_encoder[1],
    "cond_encoder": lambda m: m.cond_encoder,
    "non_attn_cond_projection": lambda m: m.non_attn_cond_projection,
    "input_projection": lambda m: m.input_projection,
    "norm_cond": lambda m: m.norm_cond,
    **{f"decoder_layer.{i}": (lambda m, i=i: m.seqTransDecoder.stack[i]) for i in range(8)},
    "final_layer": lambda m: m.final_layer,
}


def _run_with_taps(model: LMDM, *args, **kwargs) -> dict[str, Tensor]:
    """Call the model, recording the tapped module outputs and the FiLM input of the decoder."""
    seen: dict[str, Tensor] = {}
    handles = [
        TAPS[name](model).register_forward_hook(lambda _m, _a, out, name=name: seen.__setitem__(name, out))
        for name in TAPS
    ]
    handles.append(model.seqTransDecoder.register_forward_pre_hook(lambda _m, a: seen.__setitem__("film_t", a[2])))
    try:
        with torch.inference_mode():
            seen["output"] = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.fixture(scope="module")
def forward_outputs(lmdm, golden_forward) -> dict[int, dict[str, Tensor]]:
    """out_cond / out_uncond per t, with the taps of the t = 999 calls."""
    g = golden_forward
    x, cond_frame, cond = g["fwd.x_t"], g["fwd.cond_frame"], g["fwd.cond"]
    out = {}
    for t in (999, 399, 0):
        time = g[f"fwd.t{t}.time"]
        out[t] = {
            "cond": _run_with_taps(lmdm, x, cond_frame, cond, time),
            "uncond": _run_with_taps(lmdm, x, cond_frame, cond, time, drop_condition=True),
        }
    return out


@pytest.mark.parametrize("t", [999, 399, 0])
def test_forward_matches_golden(t, forward_outputs, golden_forward):
    g = golden_forward
    cond_out = forward_outputs[t]["cond"]["output"]
    uncond_out = forward_outputs[t]["uncond"]["output"]
    assert_rel(cond_out, g[f"fwd.t{t}.out_cond"], f"t{t} out_cond")
    assert_rel(uncond_out, g[f"fwd.t{t}.out_uncond"], f"t{t} out_uncond")
    x_start = uncond_out + (cond_out - uncond_out) * 2
    assert_rel(x_start, g[f"fwd.t{t}.x_start"], f"t{t} x_start")
    pred_noise = cosine_schedule().predict_noise(g["fwd.x_t"], x_start, g[f"fwd.t{t}.time"])
    assert_rel(pred_noise, g[f"fwd.t{t}.pred_noise"], f"t{t} pred_noise")


@pytest.mark.parametrize("name", ["film_t", "to_time_cond_raw", *TAPS])
def test_forward_intermediates_conditional(name, forward_outputs, golden_forward):
    seen = forward_outputs[999]["cond"]
    ours = seen["to_time_cond"] if name == "to_time_cond_raw" else seen[name]
    key = "fwd.t999.sinusoidal_emb" if name == "sinusoidal_emb" else f"fwd.t999.cond.{name}"
    assert_rel(ours, golden_forward[key], f"cond.{name}")


@pytest.mark.parametrize("name", ["film_t", "norm_cond", "decoder_layer.0", "decoder_layer.7"])
def test_forward_intermediates_unconditional(name, forward_outputs, golden_forward):
    assert_rel(forward_outputs[999]["uncond"][name], golden_forward[f"fwd.t999.uncond.{name}"], f"uncond.{name}")


def test_guided_call_equals_two_branches(lmdm, forward_outputs, golden_forward):
    g = golden_forward
    with torch.inference_mode():
        guided = lmdm.guided(g["fwd.x_t"], g["fwd.cond_frame"], g["fwd.cond"], g["fwd.t399.time"])
    cond_out, uncond_out = (forward_outputs[399][k]["output"] for k in ("cond", "uncond"))
    assert torch.equal(guided, uncond_out + (cond_out - uncond_out) * 2)


# --------------------------------------------------------------------------- schedule
def test_noise_schedule_tables(golden_ddim):
    schedule = cosine_schedule()
    assert_close(schedule.betas, golden_ddim["sched.betas_f64"], atol=SCHEDULE_TOL, what="betas")
    assert schedule.betas.dtype == torch.float64 and schedule.alphas_cumprod.dtype == torch.float32
    assert_close(schedule.alphas_cumprod, golden_ddim["sched.alphas_cumprod"], atol=SCHEDULE_TOL, what="alphas_cumprod")


@pytest.mark.parametrize("steps", [5, 10, 50])
def test_step_coefficients(steps, golden_ddim, manifest):
    info = manifest["generation_info"]["schedules"][str(steps)]
    assert [list(p) for p in sampling_times(steps)] == info["time_pairs"]
    coefficients = ddim_coefficients(cosine_schedule(), steps)
    assert coefficients.times.tolist() == info["time_cond"]
    for name in ("alpha_next_sqrt", "c", "sigma"):
        ours, ref = getattr(coefficients, name), golden_ddim[f"sched.S{steps}.{name}"]
        assert torch.equal(ours.isnan(), ref.isnan()), f"S{steps}.{name}: NaN pattern"
        ok = ~ref.isnan()
        assert_close(ours[ok][1:], ref[ok][1:], atol=SCHEDULE_TOL, what=f"S{steps}.{name}")
        first_tol = C0_TOL if name == "c" else SCHEDULE_TOL
        assert_close(ours[ok][:1], ref[ok][:1], atol=first_tol, what=f"S{steps}.{name}[0]")


def test_nan_step_count_is_rejected_before_sampling(lmdm):
    assert ddim_coefficients(cosine_schedule(), 5).c[0].isnan()
    with pytest.raises(DiffusionError, match="5 diffusion sampling steps"):
        DDIMSampler(lmdm, steps=5)
    with pytest.raises(DiffusionError, match="between 1 and 1000"):
        DDIMSampler(lmdm, steps=0)
    schedule = cosine_schedule()
    assert [s for s in range(1, 201) if ddim_coefficients(schedule, s).c.isnan().any()] == [3, 4, 5, 7]


def test_non_finite_result_is_an_error(lmdm, golden_ddim):
    sampler = DDIMSampler(lmdm, steps=1, seed=0)
    cond = golden_ddim["ddim.cond"].clone()
    cond[0, 3, 7] = float("nan")
    with pytest.raises(DiffusionError, match="NaN/inf"):
        sampler.sample(golden_ddim["ddim.cond_frame"], cond)


def test_seeded_sampler_noise_is_reproducible(lmdm):
    a, b = DDIMSampler(lmdm, steps=10, seed=1234), DDIMSampler(lmdm, steps=10, seed=1234)
    assert a.step_noise.shape == (9, 1, 80, 265)
    assert torch.equal(a.step_noise, b.step_noise)
    assert torch.equal(a.initial_noise(), b.initial_noise())
    assert not torch.equal(a.initial_noise(), DDIMSampler(lmdm, steps=10, seed=1).initial_noise())


def test_ddim_sampling_matches_golden(lmdm, golden_ddim):
    g = golden_ddim
    sampler = DDIMSampler(lmdm, steps=int(g["ddim.S"]), step_noise=g["ddim.step_noise"])
    for name in ("alpha_next_sqrt", "c", "sigma"):
        assert_close(getattr(sampler.coefficients, name), g[f"ddim.{name}"], atol=SCHEDULE_TOL, what=name)
    steps: list[SamplingStep] = []
    out = sampler.sample(g["ddim.cond_frame"], g["ddim.cond"], g["ddim.x_T"], on_step=steps.append)
    assert [s.t for s in steps] == g["ddim.time_cond"].tolist()
    for s in steps:
        for name in ("x_in", "x_start", "pred_noise"):
            assert_rel(getattr(s, name), g[f"ddim.{name}"][s.index], f"step {s.index} {name}")
    assert_rel(out, g["ddim.out"], "ddim.out")


# --------------------------------------------------------------------------- windows
class ReplaySampler:
    """Stand-in for :class:`DDIMSampler` returning the golden per-window predictions in order."""

    def __init__(self, model: LMDM, predictions: list[Tensor]) -> None:
        self.model = model
        self.device = torch.device("cpu")
        self._predictions = iter(predictions)

    def sample(self, cond_frame: Tensor, cond: Tensor, x_T: Tensor | None = None) -> Tensor:
        return next(self._predictions)


def _window_keys(g: dict[str, Tensor], prefix: str) -> int:
    """Number of windows stored under ``{prefix}.w{i}.*``."""
    return len({k for k in g if re.fullmatch(rf"{prefix}\.w\d+\.pred", k)})


def _check_records(records: list[WindowRecord], g: dict[str, Tensor], prefix: str) -> None:
    assert len(records) == _window_keys(g, prefix)
    for r in records:
        key = f"{prefix}.w{r.index}"
        assert_rel(r.cond_frame, g[f"{key}.kp_cond"][0], f"{key}.kp_cond")
        assert_rel(r.condition, g[f"{key}.aud_cond"][0], f"{key}.aud_cond")
        assert torch.equal(r.x_T, g[f"{key}.x_T"])
        assert_rel(r.prediction, g[f"{key}.pred"][0], f"{key}.pred")
        assert_rel(r.sequence, g[f"{key}.res_after"][0], f"{key}.res_after")


def _offline_config(g: dict[str, Tensor], manifest: dict, clip: bool = True) -> WindowConfig:
    info = manifest["generation_info"]["windows"]["offline"]
    return WindowConfig(
        overlap=int(g["off.overlap_v2"]), smoothing_kernel=info["smo_k_d"], fix_kp_cond=info["fix_kp_cond"],
        clip_range=g["off.v_min_max"] if clip else None,
    )


def _run_offline(sampler, g, inputs, manifest) -> tuple[Tensor, list[WindowRecord]]:
    records: list[WindowRecord] = []
    motion = generate_offline(
        sampler, inputs["cond_all"], inputs["s_kp_cond"][0], _offline_config(g, manifest),
        initial_noise=[g[f"off.w{i}.x_T"] for i in range(_window_keys(g, "off"))], on_window=records.append,
    )
    return motion, records


def _check_offline(motion: Tensor, records: list[WindowRecord], g: dict[str, Tensor]) -> None:
    _check_records(records, g, "off")
    n = motion.shape[0]
    final_smoothed = smooth_window(records[-1].sequence[:n], 0, n, kernel=3)
    assert_rel(final_smoothed, g["off.final_res_smoothed"][0], "off.final_res_smoothed")
    assert_rel(motion, g["off.final_clipped"], "off.final_clipped")
    assert torch.equal(clip_motion(g["off.final_res_smoothed"][0], g["off.v_min_max"]), g["off.final_clipped"])


def test_offline_windows_replay(lmdm, golden_windows, inputs, manifest):
    g = golden_windows
    predictions = [g[f"off.w{i}.pred"] for i in range(_window_keys(g, "off"))]
    motion, records = _run_offline(ReplaySampler(lmdm, predictions), g, inputs, manifest)
    assert motion.shape == (150, 265)
    _check_offline(motion, records, g)


def test_offline_windows_end_to_end(lmdm, golden_windows, inputs, manifest):
    g = golden_windows
    sampler = DDIMSampler(lmdm, steps=int(g["off.S"]), step_noise=g["off.step_noise"])
    motion, records = _run_offline(sampler, g, inputs, manifest)
    _check_offline(motion, records, g)


def _static_condition(inputs: dict[str, Tensor]) -> Tensor:
    """The non-audio part of the 1103-d condition for an image source: emo, eye_open, eye_ball, sc."""
    return torch.cat([inputs[k][0] for k in ("src.emo", "src.eye_open", "src.eye_ball", "src.kp")])


@pytest.fixture(scope="module")
def online_run(lmdm, golden_windows, inputs, manifest):
    """Ditto's online loop on the fixture stream (5-row chunks), replaying the golden predictions."""
    g = golden_windows
    info = manifest["generation_info"]["windows"]["online"]
    config = WindowConfig(
        overlap=int(g["on.overlap_v2"]), smoothing_kernel=info["smo_k_d"], fix_kp_cond=info["fix_kp_cond"],
        fix_kp_cond_dims=tuple(info["fix_kp_cond_dim"]), clip_range=g["off.v_min_max"],
    )
    static = _static_condition(inputs)
    first_indices: list[int] = []

    def condition_fn(features: Tensor, first_index: int) -> Tensor:
        first_indices.append(first_index)
        return torch.cat((features, static.expand(features.shape[0], -1)), dim=1)

    consumed = []

    def chunks() -> Iterator[Tensor]:
        for i, chunk in enumerate(g["on.speech_feat"].split(info["chunk_frames"])):
            consumed.append(i)
            yield chunk

    n_windows = info["n_lmdm_calls"]
    records: list[WindowRecord] = []
    emitted: list[tuple[int, MotionChunk]] = []
    for chunk in stream_online(
        ReplaySampler(lmdm, [g[f"on.w{i}.pred"] for i in range(n_windows)]), chunks(), inputs["s_kp_cond"][0],
        condition_fn, g["on.warmup_feat"], config,
        initial_noise=[g[f"on.w{i}.x_T"] for i in range(n_windows)], on_window=records.append,
    ):
        emitted.append((len(consumed), chunk))
    return {"records": records, "emitted": emitted, "first_indices": first_indices}


def test_online_windows_replay(online_run, golden_windows, manifest):
    g = golden_windows
    _check_records(online_run["records"], g, "on")
    chunks = [chunk for _, chunk in online_run["emitted"]]
    for chunk in chunks:
        assert_rel(chunk.anchor, g["on.d0"], "on.d0")
    frames = torch.cat([c.frames for c in chunks])
    assert frames.shape[0] == manifest["generation_info"]["windows"]["online"]["n_emitted"]
    assert_rel(frames, g["on.emitted_clipped"], "on.emitted_clipped")
    assert [c.first_frame for c in chunks] == [0, 10, 20, 30, 40, 50]
    assert [c.frames.shape[0] for c in chunks] == [10, 10, 10, 10, 10, 20]
    # Window conditions start in the warm-up (frame −70) and advance by V = 10.
    assert online_run["first_indices"] == [-70, -60, -50, -40, -30, -20, -10]


def test_online_frames_are_yielded_as_windows_complete(online_run):
    # The anchor window runs after 2 chunks (70 warm-up + 10 rows), window 1 after 4,
    # then one window per 2 chunks (V = 10 rows); the flush after all 12 chunks emits the rest.
    assert [n for n, _ in online_run["emitted"]] == [4, 6, 8, 10, 12, 12]
