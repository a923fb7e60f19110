"""Shared test fixtures: paths to the in-repo test data (tests/data) and the deterministic weight filler."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TALKINGHEAD_SHARED") or REPO / "tests" / "data").resolve()
"""The test data: golden fixtures, public test media, the fill-rule tool and specs (tests/data/README.md).
It is the in-repo copy of ../shared; TALKINGHEAD_SHARED names another folder of the same layout instead."""
FIXTURES = DATA / "fixtures"
TESTDATA = DATA / "testdata"
LP_FIXTURES = FIXTURES / "liveportrait"
DITTO_FIXTURES = FIXTURES / "ditto"

torch.set_num_threads(2)


def _load_fill_module():
    path = DATA / "tools" / "fill_weights.py"
    spec = importlib.util.spec_from_file_location("fill_weights", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def fill_weights():
    """The fill-rule module (``tests/data/tools/fill_weights.py``)."""
    return _load_fill_module()


@pytest.fixture(scope="session")
def lp_manifest():
    """The LivePortrait fixture manifest (dict)."""
    return json.loads((LP_FIXTURES / "manifest.json").read_text())


def lp_file_entry(manifest: dict, file_id_or_suffix: str) -> dict:
    """The manifest ``files[]`` entry whose id or hub path suffix matches."""
    for f in manifest["files"]:
        if f.get("id") == file_id_or_suffix or f["hub_path"].endswith(file_id_or_suffix):
            return f
    raise KeyError(file_id_or_suffix)


def _lp_networks() -> dict:
    from talkinghead.models.appearance import AppearanceFeatureExtractor
    from talkinghead.models.motion_extractor import MotionExtractor
    from talkinghead.models.spade import SPADEDecoder
    from talkinghead.models.warping import WarpingNetwork

    return {"F": AppearanceFeatureExtractor, "M": MotionExtractor, "W": WarpingNetwork, "G": SPADEDecoder}


LP_NETWORKS = _lp_networks()
"""Manifest id → network class of the four flat LivePortrait checkpoints."""


@pytest.fixture(scope="session")
def filled(fill_weights, lp_manifest):
    """network id → (default network in eval mode, strictly loaded with the filled checkpoint; that checkpoint)."""
    from talkinghead.weights_strict import load_state_dict_strict

    cache: dict = {}

    def get(network_id: str):
        if network_id not in cache:
            entry = lp_file_entry(lp_manifest, network_id)
            state_dict = fill_weights.fill_manifest_file(entry)
            module = LP_NETWORKS[network_id](**entry["config"])
            load_state_dict_strict(module, state_dict, f"fill:{entry['hub_path']}")
            cache[network_id] = (module.eval(), state_dict)
        return cache[network_id]

    return get


def load_golden(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0, what: str = "") -> None:
    """Assert |a - e| <= atol + rtol*|e| elementwise, with a helpful message."""
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    diff = (a - e).abs()
    bound = atol + rtol * e.abs()
    bad = diff > bound
    assert not bad.any(), f"{what}: max |diff| {diff.max().item():.3g} (atol {atol}, rtol {rtol}), {int(bad.sum())} values out of tolerance"


@pytest.fixture(scope="session")
def lp_weights_dir(tmp_path_factory, fill_weights, lp_manifest) -> Path:
    """A folder laid out like the Hub repo, holding the five LivePortrait ``.pth``
    files filled by ``tests/data/tools/fill_weights.py`` (same nesting and key layout
    as the real checkpoints)."""
    root = tmp_path_factory.mktemp("weights")
    for entry in lp_manifest["files"]:
        path = root / entry["hub_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(fill_weights.fill_manifest_file(entry), path)
    return root


@pytest.fixture(scope="session")
def ditto_inputs() -> dict:
    """tests/data/fixtures/ditto/inputs.safetensors: the synthetic source motion, condition parts, features."""
    return load_golden(DITTO_FIXTURES / "inputs.safetensors")


@pytest.fixture(scope="session")
def ditto_post_golden() -> dict:
    """tests/data/fixtures/ditto/golden_post.safetensors: Ditto's motion post-processing, both variants."""
    return load_golden(DITTO_FIXTURES / "golden_post.safetensors")


@pytest.fixture(scope="session")
def filled_stitching(fill_weights, lp_manifest) -> torch.nn.Module:
    """LivePortrait's stitching MLP with fill-rule weights (``retarget_shoulder``, ``module.`` removed)."""
    from talkinghead.models.stitching import stitching_mlp
    from talkinghead.weights_strict import load_state_dict_strict

    filled = fill_weights.fill_manifest_file(lp_file_entry(lp_manifest, "S"))["retarget_shoulder"]
    mlp = stitching_mlp()
    load_state_dict_strict(mlp, {k.replace("module.", ""): v for k, v in filled.items()}, "filled retarget_shoulder")
    return mlp.eval()


@pytest.fixture(scope="session")
def engine(lp_weights_dir):
    """An :class:`talkinghead.Engine` on CPU with the filled LivePortrait weights."""
    from talkinghead.engine import Engine

    return Engine.from_pretrained(weights=lp_weights_dir, device="cpu", progress=False)


def landmarks_json(name: str) -> Path:
    """Path of the testdata landmark file for a testdata media file name (e.g. ``"lp_d0.mp4"``)."""
    return TESTDATA / "landmarks" / f"{name}.json"


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """``samples`` (float, clipped to [-1, 1]) as a 16-bit mono WAV at ``rate`` Hz (a valid file even when empty)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def write_toy_audio_encoder(path: Path, *, input_name: str = "input_values", width: int = 1024,
                    stride: int = 320, batch_axis: bool = False) -> Path:
    """Write a toy ONNX audio encoder with the interface of Ditto's HuBERT graph (row k = mean of
    samples [320k, 320k + 400) × a fixed 1024-vector): input [1, N] → Unsqueeze → Conv(400, stride) → Transpose → MatMul → [T, width]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out_shape = [1, "T", width] if batch_axis else ["T", width]
    nodes = [
        helper.make_node("Unsqueeze", [input_name, "axis1"], ["wave"]),
        helper.make_node("Conv", ["wave", "box"], ["means"], kernel_shape=[400], strides=[stride]),
        helper.make_node("Transpose", ["means"], ["column"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["column", "rows"], ["batched" if not batch_axis else "encoding_out"]),
    ]
    if not batch_axis:
        nodes.append(helper.make_node("Squeeze", ["batched", "axis0"], ["encoding_out"]))
    initializers = [
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.full((1, 1, 400), 1 / 400, np.float32), "box"),
        numpy_helper.from_array(np.linspace(0.5, 1.5, width, dtype=np.float32)[None], "rows"),
    ]
    graph = helper.make_graph(
        nodes, "toy_hubert",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, "N"])],
        [helper.make_tensor_value_info("encoding_out", TensorProto.FLOAT, out_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def all_weights_dir(tmp_path_factory, lp_weights_dir, fill_weights) -> Path:
    """One folder holding both Hub repos' files at their repo paths: the filled LivePortrait
    files (linked), Ditto's LMDM filled by the fill rule (rotary buffers analytic, as in the
    real file) and a toy ONNX audio encoder with the real one's interface."""
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("all_weights")
    for path in lp_weights_dir.rglob("*.pth"):
        target = root / path.relative_to(lp_weights_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    manifest = json.loads((DITTO_FIXTURES / "manifest.json").read_text())
    entry = manifest["files"][0]
    checkpoint = fill_weights.fill_manifest_file(entry)
    freqs = load_file(str(DITTO_FIXTURES / "inputs.safetensors"))["const.rotary_freqs"]
    state = checkpoint["model_state_dict"]
    for key in [k for k in state if k.endswith("rotary.freqs")]:
        state[key] = freqs.clone()
    lmdm = root / entry["hub_path"]
    lmdm.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, lmdm)
    encoder = root / "ditto_pytorch" / "aux_models" / "hubert_streaming_fix_kv.onnx"
    encoder.parent.mkdir(parents=True, exist_ok=True)
    write_toy_audio_encoder(encoder)
    write_ditto_config(root / "ditto_cfg" / "v0.4_hubert_cfg_pytorch.pkl", TEST_OFFLINE_KWARGS)
    write_ditto_config(root / "ditto_cfg" / "v0.4_hubert_cfg_trt_online.pkl", TEST_ONLINE_KWARGS)
    return root


AUDIO2MOTION_CFG = {"model_path": "ditto_pytorch/models/lmdm_v0.4_hubert.pth", "device": "cuda",
                    "motion_feat_dim": 265, "audio_feat_dim": 1103, "seq_frames": 80, "use_emo": True,
                    "use_sc": True, "use_eye_open": True, "use_eye_ball": True, "w2f_type": "hubert"}
"""``audio2motion_cfg`` of Ditto's cfg pickles (Ditto core/atomic_components/cfg.py reads these keys)."""

TEST_OFFLINE_KWARGS = {"sampling_timesteps": 10, "overlap_v2": 10, "smo_k_d": 3, "fix_kp_cond": 0, "emo": 4}
"""The test weights' offline configuration: Ditto's offline window settings at 10 steps."""

TEST_ONLINE_KWARGS = {"sampling_timesteps": 10, "overlap_v2": 70, "fix_kp_cond": 1, "fix_kp_cond_dim": [0, 202],
                      "online_mode": True, "emo": 4}
"""The test weights' online configuration (the window settings reported for Ditto's online cfg)."""


def write_ditto_config(path: Path, default_kwargs: dict, protocol: int = 4, numpy1: bool = False) -> Path:
    """Write a configuration pickle in Ditto's layout (``base_cfg``, ``audio2motion_cfg``, ``default_kwargs``).

    ``numpy1=True`` writes NumPy 1's module names (``numpy.core.multiarray``)
    for arrays and scalars, as a file pickled under NumPy 1 has them
    (protocol 3, where module names are plain text in the stream).
    """
    import pickle

    cfg = {"base_cfg": {"hubert_cfg": {"model_path": "ditto_pytorch/aux_models/hubert_streaming_fix_kv.onnx"}},
           "audio2motion_cfg": dict(AUDIO2MOTION_CFG), "default_kwargs": default_kwargs}
    data = pickle.dumps(cfg, protocol=3 if numpy1 else protocol)
    if numpy1:
        assert b"numpy._core" in data or b"numpy" not in data
        data = data.replace(b"numpy._core", b"numpy.core")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def audio_engine(all_weights_dir):
    """A CPU :class:`talkinghead.Engine` that can also run the audio job (filled weights, toy encoder)."""
    from talkinghead.engine import Engine

    return Engine.from_pretrained(weights=all_weights_dir, device="cpu", progress=False)


APP_MAX_AUDIO_S = 8.5
"""The app's audio limit in the app tests: espeak_en_us.wav (7.6 s) passes, dt_german1.wav (8.7 s) does not."""
APP_START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_url(process: subprocess.Popen, log: Path, url: str) -> None:
    """Wait until the app prints its local URL (bounded); fail with its log otherwise."""
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if url in log.read_text():
            return
        time.sleep(0.5)
    pytest.fail(f"app.py did not serve {url} within {APP_START_TIMEOUT_S:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def app_url(all_weights_dir: Path, tmp_path_factory) -> Iterator[str]:
    """URL of ``python app.py`` running on 127.0.0.1 (CPU, filled weights, testdata landmarks)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "TALKINGHEAD_WEIGHTS": str(all_weights_dir),
           "TALKINGHEAD_LANDMARKS_DIR": str(TESTDATA / "landmarks"), "TALKINGHEAD_DEVICE": "cpu",
           "TALKINGHEAD_MAX_AUDIO_S": str(APP_MAX_AUDIO_S), "TALKINGHEAD_STREAM_SEGMENT_FRAMES": "1",
           "OMP_NUM_THREADS": "2"}
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_url(process, log, url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


# ------------------------------------------------ enhance networks (spandrel's classes, seeded random weights)
def _new_arch_key(key: str, num_blocks: int) -> str:
    """spandrel's RRDBNet key → the name Real-ESRGAN's released files use (``conv_first``, ``body.N.rdbM.convK`` …)."""
    if m := re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key):
        return f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
    layer, kind = key.rsplit(".", 1)
    names = {"model.0": "conv_first", f"model.1.sub.{num_blocks}": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    return f"{names[layer]}.{kind}"


@pytest.fixture(scope="session")
def x2plus_state_dict() -> dict[str, torch.Tensor]:
    """A Real-ESRGAN x2plus layout (pixel-unshuffle 2, 4× upsampling) with 2 blocks instead of 23, as released:
    new-arch names inside ``params_ema``.  The last conv is rescaled so the output spreads around mid-grey."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=12, out_nc=3, num_filters=64, num_blocks=2, scale=4, shuffle_factor=2)
    state = {_new_arch_key(k, 2): v for k, v in net.state_dict().items()}
    state["conv_last.weight"] *= 10
    state["conv_last.bias"] += 0.5
    return {"params_ema": state}


@pytest.fixture(scope="session")
def gfpgan_state_dict() -> dict[str, torch.Tensor]:
    """GFPGANv1Clean with GFPGAN v1.4's configuration (512 px, channel multiplier 2), seeded."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                 num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    return net.state_dict()


@pytest.fixture(scope="session")
def gfpgan(gfpgan_state_dict):
    """A :class:`talkinghead.enhance.FaceRestorer` on the seeded GFPGAN state dict (CPU)."""
    from talkinghead.enhance import FaceRestorer

    return FaceRestorer.from_state_dict({"params_ema": gfpgan_state_dict}, "gfpgan")


@pytest.fixture(scope="session", autouse=True)
def _local_c2pa_credential(tmp_path_factory) -> Iterator[None]:
    """Outputs are C2PA-signed: the locally generated credential goes to a session folder, not ~/.cache."""
    os.environ["TALKINGHEAD_C2PA_DIR"] = str(tmp_path_factory.mktemp("c2pa") / "credential")
    yield
    os.environ.pop("TALKINGHEAD_C2PA_DIR", None)
