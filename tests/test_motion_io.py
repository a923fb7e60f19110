"""Motion files: bit-exact round trip of golden motion, and a clear ControlError for bad or foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import LP_FIXTURES, load_golden
from safetensors.torch import load_file, save_file

from talkinghead.errors import ControlError
from talkinghead.motion.frame import KeypointInfo, MotionSequence
from talkinghead.motion.io import FORMAT, FORMAT_VERSION, MotionFile, load_motion, save_motion

FIELDS = ("pitch", "yaw", "roll", "t", "scale", "exp")


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_pipeline.safetensors")


def _info(golden: dict[str, torch.Tensor], who: str) -> KeypointInfo:
    return KeypointInfo(**{f: golden[f"synth.{who}.{f}"] for f in FIELDS + ("kp",)})


@pytest.fixture(scope="module")
def motion_file(golden) -> MotionFile:
    """The synthetic golden run: two driving frames and the source's keypoint info."""
    motion = MotionSequence.cat([_info(golden, "driving0").motion, _info(golden, "driving1").motion])
    return MotionFile(motion=motion, fps=29.97002997002997, producer="talkinghead test", source=_info(golden, "source"))


@pytest.fixture
def saved(tmp_path, motion_file) -> Path:
    path = tmp_path / "motion.safetensors"
    save_motion(path, motion_file)
    return path


def _assert_bit_exact(actual: MotionSequence, expected: MotionSequence) -> None:
    assert type(actual) is type(expected)
    for name in FIELDS + (("kp",) if isinstance(expected, KeypointInfo) else ()):
        a, e = getattr(actual, name), getattr(expected, name)
        assert a.dtype == torch.float32 and torch.equal(a, e), name


def test_round_trip_is_bit_exact(saved, motion_file) -> None:
    loaded = load_motion(saved)
    _assert_bit_exact(loaded.motion, motion_file.motion)
    _assert_bit_exact(loaded.source, motion_file.source)
    assert loaded.fps == motion_file.fps and loaded.producer == motion_file.producer


def test_round_trip_without_source_and_from_keypoint_info(tmp_path, golden) -> None:
    """A KeypointInfo given as motion is stored as motion only (its kp is dropped)."""
    info = _info(golden, "driving1")
    path = tmp_path / "m.safetensors"
    save_motion(path, MotionFile(motion=info, fps=25.0))
    loaded = load_motion(path)
    assert loaded.source is None
    _assert_bit_exact(loaded.motion, info.motion)


def test_fields_sharing_memory_are_saved(tmp_path) -> None:
    """A neutral motion built from one shared zero tensor (pitch = yaw = roll) still saves."""
    zero = torch.zeros(3, 1)
    neutral = MotionSequence(zero, zero, zero, torch.zeros(3, 3), zero + 1.5, torch.zeros(3, 21, 3))
    save_motion(tmp_path / "neutral.safetensors", MotionFile(motion=neutral, fps=25.0))
    _assert_bit_exact(load_motion(tmp_path / "neutral.safetensors").motion, neutral)


def test_file_follows_the_documented_schema(saved) -> None:
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == FORMAT and metadata["format_version"] == str(FORMAT_VERSION)
    shapes = {k: tuple(v.shape) for k, v in load_file(str(saved)).items()}
    assert shapes == {
        "motion.pitch": (2, 1), "motion.yaw": (2, 1), "motion.roll": (2, 1), "motion.t": (2, 3),
        "motion.scale": (2, 1), "motion.exp": (2, 21, 3),
        "source.pitch": (1, 1), "source.yaw": (1, 1), "source.roll": (1, 1), "source.t": (1, 3),
        "source.scale": (1, 1), "source.exp": (1, 21, 3), "source.kp": (1, 21, 3),
    }


def _rewrite(path: Path, tensors: dict[str, torch.Tensor] | None = None, **metadata: str | None) -> None:
    """Re-save ``path`` with some tensors and metadata replaced (None removes a key)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    data = load_file(str(path))
    for store, changes in ((data, tensors or {}), (meta, metadata)):
        for key, value in changes.items():
            if value is None:
                store.pop(key)
            else:
                store[key] = value
    save_file(data, str(path), metadata=meta)


@pytest.mark.parametrize(("tensors", "metadata", "message"), [
    (None, {"format": None}, "not a talkinghead motion file"),
    (None, {"format": "something.else"}, "not a talkinghead motion file"),
    (None, {"format_version": str(FORMAT_VERSION + 1)}, "upgrade talkinghead"),
    (None, {"format_version": "one"}, "invalid motion file format version"),
    (None, {"fps": "fast"}, "invalid motion frame rate"),
    (None, {"fps": "-25"}, "frame rate must be a positive"),
    ({"motion.yaw": None}, {}, "lacks tensor 'motion.yaw'"),
    ({"source.kp": None}, {}, "lacks tensor 'source.kp'"),
    ({"motion.extra": torch.zeros(2)}, {}, "unexpected tensor 'motion.extra'"),
    ({"motion.yaw": torch.zeros(2, 1, dtype=torch.float64)}, {}, "expected torch.float32"),
    ({"motion.yaw": torch.zeros(3, 1)}, {}, "bad motion tensors"),
    ({"motion.exp": torch.zeros(2, 20, 3)}, {}, "bad motion tensors"),
    ({"motion.t": torch.full((2, 3), float("nan"))}, {}, "NaN or infinite"),
])
def test_bad_files_raise_control_error(saved, tensors, metadata, message) -> None:
    _rewrite(saved, tensors, **metadata)
    with pytest.raises(ControlError, match=message):
        load_motion(saved)


def test_missing_foreign_and_empty_files_raise_control_error(tmp_path) -> None:
    with pytest.raises(ControlError, match="does not exist"):
        load_motion(tmp_path / "nope.safetensors")
    garbage = tmp_path / "clip.safetensors"
    garbage.write_bytes(b"RIFF....WAVEfmt not a safetensors file")
    with pytest.raises(ControlError, match="not a readable safetensors file"):
        load_motion(garbage)
    weights = tmp_path / "weights.safetensors"
    save_file({"layer.weight": torch.zeros(2, 2)}, str(weights))
    with pytest.raises(ControlError, match="not a talkinghead motion file"):
        load_motion(weights)


def test_empty_motion_and_unwritable_path_raise_control_error(tmp_path, motion_file) -> None:
    with pytest.raises(ControlError, match="at least one frame"):
        MotionFile(motion=motion_file.motion[0:0], fps=25.0)
    with pytest.raises(ControlError, match="cannot write motion file"):
        save_motion(tmp_path / "missing_dir" / "m.safetensors", motion_file)
