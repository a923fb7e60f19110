"""RGB → yuv420p on the renderer's device (the GPU fast path's colour conversion) against the writer's swscale.

:func:`rgb_to_yuv420` runs wherever its tensor is, so it is checked on the CPU against PyAV's ``reformat`` as
:class:`VideoWriter` calls it, on every photo of ``shared/testdata/images`` (even and odd sizes).  The writer
encodes :class:`Yuv420Frame` planes as they are, and the render loop hands them over on the GPU path
(checked with a renderer that says it is on CUDA); the CUDA run itself is marked and skipped without a GPU.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import ColorRange, Colorspace

from conftest import TESTDATA, landmarks_json
from talkinghead.enhance.finish import Finisher
from talkinghead.media.image import load_image
from talkinghead.media.video import VideoReader, VideoWriter, swscale_yuv420, write_frames
from talkinghead.media.yuv import Yuv420Frame, rgb_to_yuv420
from test_paste_tensor import _CudaLabelledRenderer

PHOTOS = sorted(p.name for p in (TESTDATA / "images").iterdir())
MAX_FRACTION = 0.015
"""Largest fraction of a plane's values that may differ from swscale's, by 1 level (measured: ≤ 1.2%)."""


def _swscale_planes(rgb: np.ndarray) -> Yuv420Frame:
    """The planes :class:`VideoWriter` makes of an (H, W, 3) uint8 RGB frame (swscale, as it calls it)."""
    packed = swscale_yuv420(rgb).to_ndarray()
    height, width = packed.shape[0] * 2 // 3, packed.shape[1]
    chroma = packed[height:].reshape(2, height // 2, width // 2)
    return Yuv420Frame(packed[:height], chroma[0], chroma[1], (rgb.shape[1], rgb.shape[0]))


def _ours(rgb: np.ndarray) -> Yuv420Frame:
    y, u, v = (plane[0].numpy() for plane in rgb_to_yuv420(torch.from_numpy(rgb)[None]))
    return Yuv420Frame(y, u, v, (rgb.shape[1], rgb.shape[0]))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("odd", [False, True])
def test_planes_equal_swscale_within_one_level(name: str, odd: bool) -> None:
    rgb = load_image(TESTDATA / "images" / name)
    rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2 - odd, : rgb.shape[1] // 2 * 2 - odd])
    ours, reference = _ours(rgb), _swscale_planes(rgb)
    assert ours.size == reference.size
    for plane, expected in zip(ours[:3], reference[:3]):
        assert plane.shape == expected.shape and plane.dtype == np.uint8
        diff = np.abs(plane.astype(int) - expected.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() <= MAX_FRACTION, (diff.max(), (diff > 0).mean())


def test_a_batch_is_each_frame_alone_and_bad_tensors_are_refused() -> None:
    frames = np.stack([load_image(TESTDATA / "images" / name) for name in ("st_happy.png", "st_sad.png")])
    planes = rgb_to_yuv420(torch.from_numpy(frames))
    for i in range(2):
        alone = rgb_to_yuv420(torch.from_numpy(frames[i:i + 1]))
        assert all(torch.equal(batch[i], one[0]) for batch, one in zip(planes, alone))
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_yuv420(torch.from_numpy(frames).float())
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        rgb_to_yuv420(torch.from_numpy(frames[0]))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


def _frames() -> list[np.ndarray]:
    """Three 719×719 frames (odd: the writer pads) of a real photo, moved a little each frame."""
    rgb = load_image(TESTDATA / "images" / "lp_d9.jpg")[:719, :719]
    return [np.ascontiguousarray(np.roll(rgb, 3 * i, axis=1)) for i in range(3)]


def _encode(path, frames) -> list[np.ndarray]:
    with VideoWriter(path, fps=25) as writer:
        for frame in frames:
            writer.write(frame)
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_range) == (Colorspace.ITU709, ColorRange.MPEG)
    return [frame[:719, :719] for frame in VideoReader(path)]


def test_the_writer_encodes_planes_as_they_are(tmp_path) -> None:
    frames = _frames()
    from_rgb = _encode(tmp_path / "rgb.mp4", frames)
    from_swscale_planes = _encode(tmp_path / "planes.mp4", [_swscale_planes(f) for f in frames])
    assert all(np.array_equal(a, b) for a, b in zip(from_rgb, from_swscale_planes))   # the same H.264 input
    from_ours = _encode(tmp_path / "ours.mp4", [_ours(f) for f in frames])
    for frame, a, b in zip(frames, from_rgb, from_ours):
        assert abs(_psnr(frame, a) - _psnr(frame, b)) <= 0.1, (_psnr(frame, a), _psnr(frame, b))


def test_the_writer_refuses_planes_of_the_wrong_form(tmp_path) -> None:
    good = _ours(_frames()[0])
    with VideoWriter(tmp_path / "a.mp4", fps=25) as writer:
        writer.write(good)
        with pytest.raises(ValueError, match="uint8 planes"):
            writer.write(good._replace(u=good.u[:-2]))
        with pytest.raises(ValueError, match="uint8 planes"):
            writer.write(good._replace(y=good.y.astype(np.int16)))
        with pytest.raises(ValueError, match="video is 719x719"):
            writer.write(_frames()[0][:-1])


def _faces() -> np.ndarray:
    return np.stack([load_image(TESTDATA / "images" / name) for name in ("st_happy.png", "st_sad.png")])


class _Doubler:
    """An upscaler stand-in on ``device``: each frame repeated 2×2 (which finishing call gets it?)."""

    def __init__(self, device: str) -> None:
        self.device, self.calls = torch.device(device), []

    def upscale(self, frame: np.ndarray) -> np.ndarray:
        self.calls.append("upscale")
        return frame.repeat(2, axis=0).repeat(2, axis=1)

    def upscale_tensor(self, frames: torch.Tensor) -> torch.Tensor:
        self.calls.append("upscale_tensor")
        return frames.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


def test_finish_tensor_converts_on_the_device_when_asked(engine) -> None:
    source = engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))
    faces = torch.from_numpy(np.stack([np.asarray(load_image(TESTDATA / "images" / "lp_d9.jpg"))[:512, :512]] * 2))
    rgb = Finisher().finish_tensor(source, faces)()
    planes = Finisher().finish_tensor(source, faces, yuv420=True)()
    assert len(planes) == 2 and all(isinstance(p, Yuv420Frame) for p in planes)
    for frame, plane in zip(rgb, planes):
        assert plane.size == (frame.shape[1], frame.shape[0])
        assert all(np.array_equal(a, b) for a, b in zip(plane[:3], _ours(frame)[:3]))
    here = _Doubler("cpu")                       # on the faces' device: upscaled there, then converted
    upscaled = Finisher(upscaler=here).finish_tensor(source, faces, yuv420=True)()
    assert here.calls == ["upscale_tensor"] and upscaled[0].size == (2 * rgb[0].shape[1], 2 * rgb[0].shape[0])
    assert np.array_equal(upscaled[0].y, _ours(here.upscale(rgb[0])).y)
    elsewhere = _Doubler("meta")                 # on another device: the host path, RGB frames
    upscaled = Finisher(upscaler=elsewhere).finish_tensor(source, faces, yuv420=True)()
    assert elsewhere.calls == ["upscale"] * 2 and all(f.shape[0] == 2 * rgb[0].shape[0] for f in upscaled)


def test_rendered_frames_on_cuda_hand_planes_to_the_writer(engine, tmp_path) -> None:
    from talkinghead.render.frames import Driven, render_frames

    source = engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))
    faces = np.stack([np.asarray(load_image(TESTDATA / "images" / "lp_d9.jpg"))[:512, :512]] * 2)
    driven = [Driven(source, torch.zeros(1, 21, 3), torch.zeros(2, 21, 3))] * 2
    frames = list(render_frames(_CudaLabelledRenderer(faces), driven, Finisher()).encoder_frames())
    assert len(frames) == 4 and all(isinstance(f, Yuv420Frame) for f in frames)
    write_frames(iter(frames), tmp_path / "out.mp4", fps=25)
    expected = Finisher()(source, faces)[0]
    decoded = list(VideoReader(tmp_path / "out.mp4"))
    assert len(decoded) == 4 and decoded[0].shape == expected.shape and _psnr(expected, decoded[0]) > 35
    plain = list(render_frames(_CudaLabelledRenderer(faces), driven, lambda s, f: list(f)).encoder_frames())
    assert all(isinstance(f, np.ndarray) for f in plain)        # a finishing step without finish_tensor: RGB


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_planes_equal_the_cpu_planes_within_one_level() -> None:
    frames = torch.from_numpy(_faces())
    for on_gpu, on_cpu in zip(rgb_to_yuv420(frames.cuda()), rgb_to_yuv420(frames)):
        assert on_gpu.is_cuda and (on_gpu.cpu().int() - on_cpu.int()).abs().max() <= 1
