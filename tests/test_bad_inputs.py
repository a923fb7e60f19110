"""Bad and unusual INPUTS, one row each: photos, audio, driving videos, keyframe files, landmark files, weights.

Every row derives its input at test time from the real media of
shared/testdata (re-encoded, cut, rotated, damaged... with Pillow, PyAV and
NumPy) and asserts the exact outcome:

* **refused** — the CLI (run in-process) exits 2 with ONE ``error:`` line that
  names the file and contains the row's key phrases, prints no traceback, and
  leaves nothing in the output folder nor beside the inputs;
* **accepted** — the input gives the correct result, checked where it matters
  (size, orientation, duration, samples, motion) through the media / face /
  engine functions, so that no row has to render frames.

Output paths, signals, ``--device``, option validation and degenerate landmark
points are covered by tests/test_bad_outputs.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import wave
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from talkinghead.cli import main
from talkinghead.errors import WeightsError
from talkinghead.face.landmarks import largest_face
from talkinghead.media.audio import load_audio
from talkinghead.media.image import load_image
from talkinghead.media.video import VideoReader, probe_video
from talkinghead.motion.keyframes import read_keyframes, sample_controls

from conftest import TESTDATA, landmarks_json

IMAGES = TESTDATA / "images"
ASTRONAUT = IMAGES / "astronaut.png"  # 512x512, one face
MALE = IMAGES / "dt_male_face.png"  # 551x672: not square, so a wrong orientation shows in its size
D0 = TESTDATA / "driving" / "lp_d0.mp4"  # 512x512, 25 fps, 78 frames, no audio
D6 = TESTDATA / "driving" / "lp_d6.mp4"  # 480x480, 30 fps, 10 s, with her voice (AAC)
D9 = TESTDATA / "driving" / "lp_d9.mp4"  # 512x480, 30 fps, 300 frames
GERMAN = TESTDATA / "audio" / "dt_german1.wav"  # 16 kHz mono speech, 8.71 s
NEWS_48K = TESTDATA / "audio" / "st_chinese_news.wav"  # 48 kHz stereo speech, 8 s
FRAME = 640  # audio samples per 25 fps video frame at 16 kHz


# ------------------------------------------------------------------ helpers that derive inputs from real media
def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def points_of(name: str) -> list[np.ndarray | None]:
    """Per-frame (68, 2) landmarks of a testdata file (None where dlib found no face)."""
    doc = json.loads(landmarks_json(name).read_text())
    return [None if f is None else np.asarray(f, np.float64) for f in doc["frames"]]


def write_landmarks(path: Path, frames: list[np.ndarray | None], width: int, height: int,
                    fps: float | None = None) -> Path:
    """A landmark file in the testdata format (keys the readers use only)."""
    doc = {"width": width, "height": height, "fps": fps, "n_frames": len(frames),
           "frames": [None if f is None else np.asarray(f, float).round(2).tolist() for f in frames]}
    path.write_text(json.dumps(doc))
    return path


def scaled(points: np.ndarray, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Landmarks through a resize by ``factor`` (pixel-centre convention) and a shift."""
    return (points + 0.5) * factor - 0.5 + np.asarray(offset)


def rotated_ccw(points: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of an image of ``width`` columns after ``np.rot90`` (90 degrees counter-clockwise)."""
    return np.stack([points[:, 1], width - 1 - points[:, 0]], axis=1)


def frames_of(path: Path, n: int) -> list[np.ndarray]:
    with VideoReader(path, max_frames=n) as reader:
        return list(reader)


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25, pts_ms: list[int] | None = None,
               rotation: int = 0) -> Path:
    """H.264 clip of RGB frames (optionally irregular timestamps in ms, or a display-matrix rotation)."""
    h, w = frames[0].shape[:2] if frames else (64, 64)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            else:
                frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def encode_audio(src: Path, path: Path, codec: str, rate: int | None = None, layout: str | None = None) -> Path:
    """Re-encode the first audio stream of ``src`` (container from ``path``'s suffix)."""
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        in_stream = inp.streams.audio[0]
        stream = out.add_stream(codec, rate=rate or in_stream.codec_context.sample_rate,
                                options={"strict": "experimental"})
        stream.layout = layout or in_stream.codec_context.layout.name
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=stream.layout.name,
                                      rate=stream.codec_context.sample_rate)
        for frame in inp.decode(in_stream):
            for part in resampler.resample(frame):
                out.mux(stream.encode(part))
        for part in resampler.resample(None):
            out.mux(stream.encode(part))
        out.mux(stream.encode(None))
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """16-bit mono WAV (a valid header even with no samples)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.asarray(samples) * 32767).astype("<i2").tobytes())
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A real PNG (the astronaut) whose header claims ``width`` x ``height`` pixels (CRC fixed)."""
    data = bytearray(ASTRONAUT.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 200) -> float:
    """Largest normalised correlation of two waveforms over lags of up to ``max_lag`` samples."""
    n = min(len(a), len(b)) - 2 * max_lag
    ref = b[max_lag:max_lag + n]
    best = 0.0
    for lag in range(-max_lag, max_lag + 1, 1):
        seg = a[max_lag + lag:max_lag + lag + n]
        best = max(best, float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12)))
    return best


class DlibLandmarks:
    """68-point landmarks from dlib's HOG detector + shape predictor (the tool that made testdata/landmarks),
    an offline detector injected where a row needs detection (face-alignment's SFD has no weights here)."""

    def __init__(self) -> None:
        dlib = pytest.importorskip("dlib")
        spec = importlib.util.find_spec("face_recognition_models")  # located, not imported (it needs pkg_resources)
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("face_recognition_models (dlib's model files) is not installed")
        models = Path(list(spec.submodule_search_locations)[0]) / "models"
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        rects = self._detector(np.ascontiguousarray(image), 1)
        faces = [np.array([[p.x, p.y] for p in self._predictor(image, r).parts()], np.float32) for r in rects]
        return largest_face(faces, [[r.left(), r.top(), r.right(), r.bottom()] for r in rects])


# ------------------------------------------------------------------ the table
@dataclass
class Ctx:
    """What a row's ``make`` and ``check`` get: the input folder and the weight folders / engines."""

    folder: Path
    lp_weights: Path
    all_weights: Path
    lp_engine: object
    all_engine: object

    def engine(self):
        """The session's CPU engine on the filled LivePortrait weights."""
        return self.lp_engine

    def audio_engine(self):
        """The session's CPU engine that can also run the audio job."""
        return self.all_engine


@dataclass(frozen=True)
class Row:
    """One bad or unusual input.

    Attributes:
        id: ``kind/what``.
        job: CLI template the input goes into (:data:`JOBS`), for refused rows.
        make: builds the input in ``ctx.folder`` from real media; returns CLI
            options to set over the template (``None`` removes one).
        refused: key phrases of the one-line error (exit 2); ``()`` = accepted.
        check: for accepted rows, ``check(ctx, options)`` asserts the result.
        name_in_message: option whose file name the error must name.
        flags: extra CLI flags for the row (e.g. ``--crop-driving on`` so that a landmark file is read).
    """

    id: str
    job: str
    make: Callable[[Ctx], dict]
    refused: tuple[str, ...] = ()
    check: Callable[[Ctx, dict], None] | None = None
    name_in_message: str | None = None
    flags: tuple[str, ...] = ()


def _jobs(ctx: Ctx, out: Path) -> dict[str, dict]:
    photo = {"--source": ASTRONAUT, "--source-landmarks": landmarks_json("astronaut.png")}
    return {
        "still": {"": "pose", **photo, "--still": out / "still.png", "--weights": ctx.lp_weights},
        "keys": {"": "pose", **photo, "--keyframes": None, "--out": out / "path.mp4", "--weights": ctx.lp_weights},
        "video": {"": "video", **photo, "--driving": D0, "--out": out / "video.mp4", "--weights": ctx.lp_weights},
        "audio": {"": "audio", **photo, "--audio": GERMAN, "--out": out / "talk.mp4", "--weights": ctx.all_weights},
    }


JOBS = ("still", "keys", "video", "audio")


def copy_in(ctx: Ctx, src: Path, name: str | None = None) -> Path:
    dst = ctx.folder / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


# images --------------------------------------------------------------------
def img(ctx: Ctx, name: str, image: Image.Image, **save) -> Path:
    path = ctx.folder / name
    image.save(path, **save)
    return path


def make_photo(builder: Callable[[Ctx], Path], landmarks: Callable[[Ctx, Path], Path | None] | None = None):
    def make(ctx: Ctx) -> dict:
        path = builder(ctx)
        return {"--source": path, "--source-landmarks": landmarks(ctx, path) if landmarks else landmarks_json("astronaut.png")}
    return make


def prepared_like_original(original: Path, tolerance: float):
    """Accepted photo check: decoded RGB matches ``original`` and the engine prepares a 512 face crop from it."""
    def check(ctx: Ctx, options: dict) -> None:
        got = load_image(options["--source"])
        want = rgb(original)
        assert got.shape == want.shape and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want).mean() <= tolerance
        source = ctx.engine().prepare_source(options["--source"], landmarks=options["--source-landmarks"])
        h, w = want.shape[:2]
        assert source.image.shape == (h - h % 2, w - w % 2, 3) and source.crop.crop.shape == (512, 512, 3)
    return check


def exif_rotated(orientation: int) -> Callable[[Ctx], Path]:
    """dt_male_face stored rotated, with the EXIF orientation tag that undoes it (6: 90° CW, 8: 90° CCW)."""
    def build(ctx: Ctx) -> Path:
        stored = np.rot90(rgb(MALE), 1 if orientation == 6 else -1)  # what the sensor wrote
        exif = Image.Exif()
        exif[0x0112] = orientation
        return img(ctx, f"phone_{orientation}.jpg", Image.fromarray(np.ascontiguousarray(stored)), quality=95,
                   exif=exif)
    return build


def two_faces(ctx: Ctx) -> Path:
    happy = Image.open(IMAGES / "st_happy.png").convert("RGB").resize((512, 512), Image.BICUBIC)
    canvas = np.concatenate([rgb(ASTRONAUT), np.asarray(happy)], axis=1)
    return img(ctx, "two_faces.png", Image.fromarray(canvas))


def check_two_faces(ctx: Ctx, options: dict) -> None:
    """The larger face (st_happy, right half, face about 300 px) is the one animated, not the astronaut's (90 px)."""
    source = ctx.engine().prepare_source(options["--source"], landmarks=DlibLandmarks())
    assert source.image.shape == (512, 1024, 3)
    assert source.landmarks[:, 0].min() > 512
    assert np.ptp(source.landmarks[:, 0]) > 200


def tiny_face(ctx: Ctx) -> Path:
    return img(ctx, "tiny.png", Image.open(ASTRONAUT).convert("RGB").resize((64, 64), Image.LANCZOS))


def tiny_face_landmarks(ctx: Ctx, path: Path) -> Path:
    return write_landmarks(ctx.folder / "tiny.json", [scaled(points_of("astronaut.png")[0], 64 / 512)], 64, 64)


def check_tiny_face(ctx: Ctx, options: dict) -> None:
    """A 64-px photo (face about 11 px) is animated as it is (LivePortrait's rules, the crop upsampled to 512), with a warning."""
    with pytest.warns(UserWarning, match=r"only \d+ px across"):
        source = ctx.engine().prepare_source(options["--source"], landmarks=options["--source-landmarks"])
    assert source.image.shape == (64, 64, 3) and source.crop.crop.shape == (512, 512, 3)


def huge_photo(ctx: Ctx) -> Path:
    big = Image.open(ASTRONAUT).convert("RGB").resize((6000, 6000), Image.BILINEAR)
    return img(ctx, "huge.jpg", big, quality=90)


def huge_photo_landmarks(ctx: Ctx, path: Path) -> Path:
    return write_landmarks(ctx.folder / "huge.json", [scaled(points_of("astronaut.png")[0], 6000 / 512)], 6000, 6000)


def check_huge_photo(ctx: Ctx, options: dict) -> None:
    """LivePortrait's size rule: a 6000-px photo is worked on at 1280 px, the face found where it is."""
    source = ctx.engine().prepare_source(options["--source"], landmarks=options["--source-landmarks"])
    assert source.image.shape == (1280, 1280, 3)
    expected = scaled(points_of("astronaut.png")[0], 1280 / 512)
    assert np.abs(source.landmarks - expected).max() < 1.0


def gif(ctx: Ctx) -> Path:
    frames = [Image.fromarray(f) for f in frames_of(D0, 3)]
    path = ctx.folder / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)
    return path


def check_gif(ctx: Ctx, options: dict) -> None:
    """An animated GIF as a photo: its first frame is the photo."""
    with Image.open(options["--source"]) as im:
        first = np.asarray(im.convert("RGB"))
    got = load_image(options["--source"])
    assert np.array_equal(got, first)
    source = ctx.engine().prepare_source(options["--source"], landmarks=options["--source-landmarks"])
    assert source.image.shape == (512, 512, 3)


def one_frame_video(ctx: Ctx) -> Path:
    return write_clip(ctx.folder / "one_frame.mp4", frames_of(D0, 1))


def check_one_frame_video_photo(ctx: Ctx, options: dict) -> None:
    """A video of one frame given as the photo (a still exported as video): that frame is the photo."""
    got = load_image(options["--source"])
    assert got.shape == (512, 512, 3)
    assert np.abs(got.astype(int) - frames_of(D0, 1)[0]).mean() < 2
    source = ctx.engine().prepare_source(options["--source"], landmarks=options["--source-landmarks"])
    assert source.crop.crop.shape == (512, 512, 3)


def d0_frame_landmarks(ctx: Ctx, path: Path) -> Path:
    return write_landmarks(ctx.folder / "frame0.json", [points_of("lp_d0.mp4")[0]], 512, 512)


def mode_row(row_id: str, name: str, mode: str, tolerance: float, original: Path = ASTRONAUT, **save) -> Row:
    def build(ctx: Ctx) -> Path:
        image = Image.open(original).convert("RGB")
        converted = image.quantize(256) if mode == "P" else image.convert(mode)
        return img(ctx, name, converted, **save)
    return Row(row_id, "still", make_photo(build),
               check=prepared_like_original(original, tolerance))


def grey_original(ctx: Ctx) -> Path:
    return img(ctx, "grey_original.png", Image.open(ASTRONAUT).convert("L").convert("RGB"))


def rgba(ctx: Ctx) -> Path:
    image = np.asarray(Image.open(ASTRONAUT).convert("RGBA")).copy()
    image[:, :, 3] = 255
    image[:64, :, 3] = 0  # a transparent band at the top, as a cut-out portrait has
    return img(ctx, "alpha.png", Image.fromarray(image))


def check_rgba(ctx: Ctx, options: dict) -> None:
    """Alpha is composited over white: opaque pixels as they are, transparent ones white."""
    got = load_image(options["--source"])
    want = rgb(ASTRONAUT)
    assert np.array_equal(got[64:], want[64:]) and (got[:64] == 255).all()
    assert ctx.engine().prepare_source(options["--source"], landmarks=options["--source-landmarks"]).image.shape == (512, 512, 3)


def png16(ctx: Ctx) -> Path:
    path = ctx.folder / "deep.png"
    cv2.imwrite(str(path), rgb(ASTRONAUT)[:, :, ::-1].astype(np.uint16) * 257)  # 16 bits per channel
    return path


def grey16(ctx: Ctx) -> Path:
    grey = np.asarray(Image.open(ASTRONAUT).convert("L")).astype(np.uint16) * 257
    path = ctx.folder / "grey16.png"
    cv2.imwrite(str(path), grey)
    return path


def check_grey16(ctx: Ctx, options: dict) -> None:
    with Image.open(options["--source"]) as im:
        assert im.mode.startswith("I")  # Pillow reads it as 16-bit
    got = load_image(options["--source"])
    want = np.asarray(Image.open(ASTRONAUT).convert("L"))
    assert np.array_equal(got, np.repeat(want[:, :, None], 3, axis=2))
    assert ctx.engine().prepare_source(options["--source"], landmarks=options["--source-landmarks"]).image.shape == (512, 512, 3)


def text_file(name: str, text: str = "hello, this is not media\n"):
    def build(ctx: Ctx) -> Path:
        path = ctx.folder / name
        path.write_text(text)
        return path
    return build


def empty_file(name: str):
    def build(ctx: Ctx) -> Path:
        path = ctx.folder / name
        path.write_bytes(b"")
        return path
    return build


def truncated(src: Path, name: str, fraction: float = 0.5):
    def build(ctx: Ctx) -> Path:
        data = src.read_bytes()
        path = ctx.folder / name
        path.write_bytes(data[: int(len(data) * fraction)])
        return path
    return build


def a_folder(name: str):
    def build(ctx: Ctx) -> Path:
        path = ctx.folder / name
        path.mkdir()
        return path
    return build


IMAGE_ROWS = [
    Row("image/no-face", "still", lambda ctx: {"--source": IMAGES / "coffee_noface.png",
                                               "--source-landmarks": landmarks_json("coffee_noface.png")},
        refused=("no face found",), name_in_message="--source"),
    Row("image/two-faces", "still", make_photo(two_faces), check=check_two_faces),
    Row("image/tiny-face-64px", "still", make_photo(tiny_face, tiny_face_landmarks), check=check_tiny_face),
    mode_row("image/cmyk-jpeg", "cmyk.jpg", "CMYK", 3.0, quality=95),
    Row("image/rgb-16bit-png", "still", make_photo(png16), check=prepared_like_original(ASTRONAUT, 0.0)),
    Row("image/grey-16bit-png", "still", make_photo(grey16), check=check_grey16),
    Row("image/rgba-png", "still", make_photo(rgba), check=check_rgba),
    Row("image/greyscale-png", "still",
        make_photo(lambda ctx: img(ctx, "grey.png", Image.open(ASTRONAUT).convert("L"))),
        check=lambda ctx, o: prepared_like_original(grey_original(ctx), 0.0)(ctx, o)),
    mode_row("image/palette-png", "palette.png", "P", 12.0),
    Row("image/exif-orientation-6", "still",
        make_photo(exif_rotated(6), lambda ctx, p: landmarks_json("dt_male_face.png")),
        check=prepared_like_original(MALE, 3.0)),
    Row("image/exif-orientation-8", "still",
        make_photo(exif_rotated(8), lambda ctx, p: landmarks_json("dt_male_face.png")),
        check=prepared_like_original(MALE, 3.0)),
    Row("image/truncated-png", "still", make_photo(truncated(ASTRONAUT, "cut.png")),
        refused=("damaged or truncated",), name_in_message="--source"),
    Row("image/truncated-jpeg", "still", make_photo(truncated(IMAGES / "lp_d9.jpg", "cut.jpg", 0.3)),
        refused=("damaged or truncated",), name_in_message="--source"),
    Row("image/zero-bytes", "still", make_photo(empty_file("empty.png")),
        refused=("is empty",), name_in_message="--source"),
    Row("image/png-named-jpg", "still", make_photo(lambda ctx: copy_in(ctx, ASTRONAUT, "really_png.jpg")),
        check=prepared_like_original(ASTRONAUT, 0.0)),
    Row("image/text-named-png", "still", make_photo(text_file("notes.png")),
        refused=("not an image",), name_in_message="--source"),
    Row("image/decompression-bomb", "still", make_photo(lambda ctx: png_claiming(ctx.folder / "bomb.png", 50000, 50000)),
        refused=("too large to decode safely",), name_in_message="--source"),
    Row("image/animated-gif", "still", make_photo(gif, lambda ctx, p: landmarks_json("lp_d0.mp4")), check=check_gif),
    Row("image/6000px-photo", "still", make_photo(huge_photo, huge_photo_landmarks), check=check_huge_photo),
    Row("image/folder-as-photo", "still", make_photo(a_folder("photo.png")),
        refused=("not a regular file",), name_in_message="--source"),
    Row("image/one-frame-video-as-photo", "still", make_photo(one_frame_video, d0_frame_landmarks),
        check=check_one_frame_video_photo),
    Row("image/video-as-photo", "still", lambda ctx: {"--source": copy_in(ctx, D9, "clip.mp4")},
        refused=("is a video", "not an image"), name_in_message="--source"),
]


# audio ---------------------------------------------------------------------
def audio_like(reference: Path, *, frames_tolerance: float = 1.0, min_correlation: float = 0.9):
    """Accepted audio check: decoded at 16 kHz mono, as long as the reference (within a frame) and alike."""
    def check(ctx: Ctx, options: dict) -> None:
        got = load_audio(options["--audio"])
        want = load_audio(reference)
        assert got.dtype == np.float32 and got.ndim == 1
        assert abs(len(got) - len(want)) <= frames_tolerance * FRAME, (len(got), len(want))
        assert best_correlation(got, want) > min_correlation
    return check


def encoded(name: str, codec: str, rate: int | None = None, layout: str | None = None, src: Path = GERMAN):
    return lambda ctx: {"--audio": encode_audio(src, ctx.folder / name, codec, rate, layout)}


def speech_wav(name: str, rate: int, layout: str):
    return lambda ctx: {"--audio": encode_audio(GERMAN, ctx.folder / name, "pcm_s16le", rate, layout)}


def check_video_as_audio(ctx: Ctx, options: dict) -> None:
    """A video with sound given as --audio: its audio track is the speech (10 s of lp_d6 at 16 kHz)."""
    samples = load_audio(options["--audio"])
    assert len(samples) == 160000 and np.abs(samples).max() > 0.05


def random_bytes(name: str, n: int = 50_000):
    def build(ctx: Ctx) -> Path:
        path = ctx.folder / name
        path.write_bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes())
        return path
    return build


AUDIO_ROWS = [
    Row("audio/zero-bytes", "audio", lambda ctx: {"--audio": empty_file("speech.wav")(ctx)},
        refused=("is empty",), name_in_message="--audio"),
    Row("audio/wav-of-zero-samples", "audio", lambda ctx: {"--audio": write_wav(ctx.folder / "nothing.wav", np.zeros(0))},
        refused=("no audio samples",), name_in_message="--audio"),
    Row("audio/silent-8s-wav", "audio", lambda ctx: {"--audio": write_wav(ctx.folder / "quiet.wav", np.zeros(8 * 16000))},
        refused=("silent",), name_in_message="--audio"),
    Row("audio/8khz-mono", "audio", speech_wav("speech_8k.wav", 8000, "mono"),
        check=audio_like(GERMAN, min_correlation=0.85)),
    Row("audio/48khz-stereo", "audio", speech_wav("speech_48k.wav", 48000, "stereo"), check=audio_like(GERMAN, min_correlation=0.99)),
    Row("audio/mp3", "audio", encoded("speech.mp3", "libmp3lame", 44100, "stereo"), check=audio_like(GERMAN)),
    Row("audio/m4a-aac", "audio", encoded("speech.m4a", "aac", 48000, "mono"), check=audio_like(GERMAN)),
    Row("audio/webm-opus", "audio", encoded("speech.webm", "libopus", 48000, "mono"), check=audio_like(GERMAN)),
    Row("audio/ogg-vorbis", "audio", encoded("speech.ogg", "vorbis", 44100, "stereo"), check=audio_like(GERMAN)),
    Row("audio/flac", "audio", encoded("speech.flac", "flac"), check=audio_like(GERMAN, frames_tolerance=0, min_correlation=0.999)),
    Row("audio/random-bytes", "audio", lambda ctx: {"--audio": random_bytes("speech.wav")(ctx)},
        refused=("not a readable audio file",), name_in_message="--audio"),
    Row("audio/truncated-m4a", "audio",
        lambda ctx: {"--audio": truncated(encode_audio(GERMAN, ctx.folder / "full.m4a", "aac", 48000, "mono"), "cut.m4a")(ctx)},
        refused=("not a readable audio file",), name_in_message="--audio"),
    Row("audio/text-named-mp3", "audio", lambda ctx: {"--audio": text_file("speech.mp3")(ctx)},
        refused=("not a readable audio file",), name_in_message="--audio"),
    Row("audio/video-with-sound-as-audio", "audio", lambda ctx: {"--audio": D6}, check=check_video_as_audio),
    Row("audio/silent-video-as-audio", "audio", lambda ctx: {"--audio": D0},
        refused=("has no audio stream",), name_in_message="--audio"),
    Row("audio/photo-as-audio", "audio", lambda ctx: {"--audio": ASTRONAUT},
        refused=("no audio stream",), name_in_message="--audio"),
]


# driving video -------------------------------------------------------------
def d0_cut(ctx: Ctx, n: int, name: str) -> Path:
    return write_clip(ctx.folder / name, frames_of(D0, n))


def motion_of(ctx: Ctx, video: Path, landmarks: Path, crop: str = "on", max_frames: int | None = None):
    return ctx.engine().extract_motion(video, landmarks=landmarks, crop=crop, max_frames=max_frames)


def k4(ctx: Ctx) -> dict:
    """2 frames of lp_d9 (512x480) scaled by 4.5 into a 3840x2160 frame (pillar-boxed)."""
    frames = []
    for frame in frames_of(D9, 2):
        canvas = np.zeros((2160, 3840, 3), np.uint8)
        canvas[:, 768:768 + 2304] = cv2.resize(frame, (2304, 2160), interpolation=cv2.INTER_LINEAR)
        frames.append(canvas)
    clip = write_clip(ctx.folder / "uhd.mp4", frames, fps=30)
    points = [scaled(p, 4.5, (768, 0)) for p in points_of("lp_d9.mp4")[:2]]
    return {"--driving": clip, "--driving-landmarks": write_landmarks(ctx.folder / "uhd.json", points, 3840, 2160, 30)}


def check_4k(ctx: Ctx, options: dict) -> None:
    info = probe_video(options["--driving"])
    assert (info.width, info.height, info.n_frames) == (3840, 2160, 2)
    big = motion_of(ctx, options["--driving"], options["--driving-landmarks"])
    assert big.n_frames == 2
    small = motion_of(ctx, D9, landmarks_json("lp_d9.mp4"), max_frames=2)
    # the same face cut from the same place: the same pose within a degree
    for name in ("pitch", "yaw", "roll"):
        assert torch.allclose(getattr(big, name), getattr(small, name)[:2], atol=1.5), name


def rotated(ctx: Ctx) -> dict:
    """lp_d9 stored as shot (512x480) with a display matrix saying: show it turned 90° counter-clockwise."""
    frames = frames_of(D9, 3)
    clip = write_clip(ctx.folder / "phone.mp4", frames, fps=30, rotation=90)
    upright = write_clip(ctx.folder / "upright.mp4", [np.rot90(f) for f in frames], fps=30)
    points = [rotated_ccw(p, 512) for p in points_of("lp_d9.mp4")[:3]]
    return {"--driving": clip, "--driving-landmarks": write_landmarks(ctx.folder / "phone.json", points, 480, 512, 30),
            "upright": upright}


def check_rotated(ctx: Ctx, options: dict) -> None:
    info = probe_video(options["--driving"])
    assert (info.rotation, info.width, info.height) == (90, 480, 512)
    shown = motion_of(ctx, options["--driving"], options["--driving-landmarks"])
    upright = motion_of(ctx, options["upright"], options["--driving-landmarks"])
    assert torch.allclose(shown.roll, upright.roll, atol=1.0) and torch.allclose(shown.yaw, upright.yaw, atol=1.0)


VFR_MS = [0, 40, 60, 130, 160, 250, 270, 300, 390, 420, 500, 520, 560, 650, 690, 720]


def vfr(ctx: Ctx) -> dict:
    clip = write_clip(ctx.folder / "vfr.mp4", frames_of(D0, len(VFR_MS)), pts_ms=VFR_MS)
    points = points_of("lp_d0.mp4")[: len(VFR_MS)]
    return {"--driving": clip, "--driving-landmarks": write_landmarks(ctx.folder / "vfr.json", points, 512, 512, 25)}


def check_vfr(ctx: Ctx, options: dict) -> None:
    """Irregular timestamps: the motion follows the clip's average rate, each frame cut around its own face."""
    motion = motion_of(ctx, options["--driving"], options["--driving-landmarks"], crop="on")
    info = probe_video(options["--driving"])
    with VideoReader(options["--driving"], fps=info.fps) as reader:
        ticks = sum(1 for _ in reader)
    assert motion.n_frames == ticks >= len(VFR_MS) - 2


def check_one_frame_driving(ctx: Ctx, options: dict) -> None:
    """A one-frame driving clip drives one frame (the source as it is, relative to itself)."""
    motion = motion_of(ctx, options["--driving"], options["--driving-landmarks"], crop="auto")
    assert motion.n_frames == 1


def zero_frames(name: str) -> Callable[[Ctx], dict]:
    """lp_d0's video stream, remuxed with none of its packets: a container of zero frames."""
    def make(ctx: Ctx) -> dict:
        path = ctx.folder / name
        with av.open(str(D0)) as inp, av.open(str(path), "w") as out:
            out.add_stream_from_template(inp.streams.video[0])
            out.start_encoding()
        return {"--driving": path}
    return make


def no_face_clip(ctx: Ctx, square: bool) -> dict:
    coffee = rgb(IMAGES / "coffee_noface.png")  # 600x400, no face
    frame = coffee[:, 100:500] if square else coffee
    clip = write_clip(ctx.folder / ("coffee_square.mp4" if square else "coffee.mp4"), [frame] * 5)
    h, w = frame.shape[:2]
    return {"--driving": clip, "--driving-landmarks": write_landmarks(ctx.folder / "coffee.json", [None] * 5, w, h, 25)}


class _NoDetector:
    """A landmark provider whose model cannot be loaded (as face-alignment offline without its weights)."""

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        raise WeightsError("cannot load the face-alignment landmark model (offline)")


def check_unchecked_clip(ctx: Ctx, options: dict) -> None:
    """A square clip when no detector can run: used as it is (as before the face check), with a warning that says so."""
    from talkinghead.drivers.video import VideoDriver

    with pytest.warns(UserWarning, match=r"coffee_square\.mp4 was not checked for a face.*--driving-landmarks"):
        driver = VideoDriver(options["--driving"], ctx.engine().networks.motion, landmarks=_NoDetector())
    assert not driver.cropped and sum(batch.motion.n_frames for batch in driver) == 5


VIDEO_ROWS = [
    Row("video/random-bytes", "video", lambda ctx: {"--driving": random_bytes("clip.mp4")(ctx)},
        refused=("not a readable video file",), name_in_message="--driving"),
    Row("video/truncated-mp4", "video", lambda ctx: {"--driving": truncated(D0, "cut.mp4")(ctx)},
        refused=("not a readable video file",), name_in_message="--driving"),
    Row("video/zero-bytes", "video", lambda ctx: {"--driving": empty_file("clip.mp4")(ctx)},
        refused=("is empty",), name_in_message="--driving"),
    Row("video/no-face-square-clip", "video", lambda ctx: no_face_clip(ctx, square=True),
        refused=("no face",), name_in_message="--driving"),
    Row("video/no-face-wide-clip", "video", lambda ctx: no_face_clip(ctx, square=False),
        refused=("no face",), name_in_message="--driving"),
    Row("video/no-face-square-clip-detected", "video",
        lambda ctx: {**no_face_clip(ctx, square=True), "--driving-landmarks": None},
        refused=("no face",), name_in_message="--driving"),
    Row("video/no-face-square-clip-no-detector", "video", lambda ctx: no_face_clip(ctx, square=True),
        check=lambda ctx, o: check_unchecked_clip(ctx, o)),
    Row("video/one-frame", "video",
        lambda ctx: {"--driving": d0_cut(ctx, 1, "one.mp4"),
                     "--driving-landmarks": write_landmarks(ctx.folder / "one.json", points_of("lp_d0.mp4")[:1], 512, 512, 25)},
        check=check_one_frame_driving),
    Row("video/4k-3840x2160", "video", k4, check=check_4k),
    Row("video/display-rotation-90", "video", rotated, check=check_rotated),
    Row("video/variable-frame-rate", "video", vfr, check=check_vfr),
    Row("video/zero-frames-mp4", "video", zero_frames("empty_video.mp4"),
        refused=("has no video stream",), name_in_message="--driving"),
    Row("video/zero-frames-mkv", "video", zero_frames("empty_video.mkv"),
        refused=("not a readable video file",), name_in_message="--driving"),
    Row("video/photo-as-driving", "video", lambda ctx: {"--driving": ASTRONAUT},
        refused=("still image",), name_in_message="--driving"),
    Row("video/audio-only-as-driving", "video", lambda ctx: {"--driving": encode_audio(GERMAN, ctx.folder / "voice.m4a", "aac", 48000, "mono")},
        refused=("no video stream",), name_in_message="--driving"),
]


# keyframes -----------------------------------------------------------------
def keys(text: str, name: str = "keys.json"):
    def make(ctx: Ctx) -> dict:
        path = ctx.folder / name
        path.write_text(text)
        return {"--keyframes": path}
    return make


def check_clamped(ctx: Ctx, options: dict) -> None:
    """Huge control values are clamped to the control's range (with a warning), like everywhere else."""
    from talkinghead.motion.controls import CONTROL_SPECS, ControlClampWarning

    with pytest.warns(ControlClampWarning):
        track = read_keyframes(options["--keyframes"])
    controls = sample_controls(track)
    assert len(controls) == 26
    assert controls[-1].yaw == CONTROL_SPECS["yaw"].high and controls[-1].smile == CONTROL_SPECS["smile"].low


def check_one_key(ctx: Ctx, options: dict) -> None:
    track = read_keyframes(options["--keyframes"])
    assert track.n_frames == 1 and sample_controls(track)[0].yaw == 10


KEYFRAME_ROWS = [
    Row("keyframes/invalid-json", "keys", keys('{"fps": 25, "keyframes": [{"t": 0,}]'), refused=("not valid JSON",),
        name_in_message="--keyframes"),
    Row("keyframes/a-list-not-an-object", "keys", keys('[{"t": 0, "yaw": 10}]'), refused=("must be a JSON object",),
        name_in_message="--keyframes"),
    Row("keyframes/no-keyframes-key", "keys", keys('{"fps": 25, "frames": []}'), refused=("unknown top-level key",),
        name_in_message="--keyframes"),
    Row("keyframes/empty-list", "keys", keys('{"fps": 25, "keyframes": []}'), refused=("non-empty",),
        name_in_message="--keyframes"),
    Row("keyframes/missing-time", "keys", keys('{"keyframes": [{"yaw": 10}]}'), refused=('no time "t"',),
        name_in_message="--keyframes"),
    Row("keyframes/negative-time", "keys", keys('{"keyframes": [{"t": -1}, {"t": 1}]}'), refused=("negative",),
        name_in_message="--keyframes"),
    Row("keyframes/unsorted-times", "keys", keys('{"keyframes": [{"t": 0}, {"t": 2}, {"t": 1}]}'),
        refused=("must increase",), name_in_message="--keyframes"),
    Row("keyframes/nan-value", "keys", keys('{"keyframes": [{"t": 0}, {"t": 1, "yaw": NaN}]}'),
        refused=("yaw", "finite number"), name_in_message="--keyframes"),
    Row("keyframes/string-value", "keys", keys('{"keyframes": [{"t": 0, "smile": "big"}]}'),
        refused=("smile",), name_in_message="--keyframes"),
    Row("keyframes/huge-control-values", "keys", keys('{"keyframes": [{"t": 0}, {"t": 1, "yaw": 1e9, "smile": -1e9}]}'),
        check=check_clamped),
    Row("keyframes/huge-time", "keys", keys('{"keyframes": [{"t": 0}, {"t": 1e12}]}'),
        refused=("too long",), name_in_message="--keyframes"),
    Row("keyframes/huge-fps", "keys", keys('{"fps": 1e9, "keyframes": [{"t": 0}, {"t": 1}]}'),
        refused=("fps",), name_in_message="--keyframes"),
    Row("keyframes/one-keyframe", "keys", keys('{"keyframes": [{"t": 0, "yaw": 10}]}'), check=check_one_key),
    Row("keyframes/not-utf8", "keys", lambda ctx: {"--keyframes": random_bytes("keys.json", 300)(ctx)},
        refused=("cannot read keyframe file",), name_in_message="--keyframes"),
]


# landmark files ------------------------------------------------------------
def edited_landmarks(name: str, edit: Callable[[dict], None], out_name: str = "marks.json"):
    def build(ctx: Ctx) -> Path:
        doc = json.loads(landmarks_json(name).read_text())
        edit(doc)
        path = ctx.folder / out_name
        path.write_text(json.dumps(doc))
        return path
    return build


def _drop(key: str):
    return lambda doc: doc.pop(key)


def _short_points(doc: dict) -> None:
    doc["frames"][0] = doc["frames"][0][:67]


def _fewer_frames(doc: dict) -> None:
    doc["frames"], doc["n_frames"] = doc["frames"][:50], 50


def _more_frames(doc: dict) -> None:
    doc["frames"], doc["n_frames"] = doc["frames"] + doc["frames"][:10], len(doc["frames"]) + 10


LANDMARK_ROWS = [
    Row("landmarks/missing-frames-key", "still",
        lambda ctx: {"--source-landmarks": edited_landmarks("astronaut.png", _drop("frames"))(ctx)},
        refused=("'frames' must be a list",), name_in_message="--source-landmarks"),
    Row("landmarks/missing-size-keys", "still",
        lambda ctx: {"--source-landmarks": edited_landmarks("astronaut.png", _drop("width"))(ctx)},
        refused=("'width' must be a positive integer",), name_in_message="--source-landmarks"),
    Row("landmarks/67-points", "still",
        lambda ctx: {"--source-landmarks": edited_landmarks("astronaut.png", _short_points)(ctx)},
        refused=("68 finite",), name_in_message="--source-landmarks"),
    Row("landmarks/not-json", "still", lambda ctx: {"--source-landmarks": text_file("marks.json")(ctx)},
        refused=("cannot read landmark file",), name_in_message="--source-landmarks"),
    Row("landmarks/for-another-photo", "still", lambda ctx: {"--source-landmarks": landmarks_json("dt_male_face.png")},
        refused=("is for a 551x672 image",), name_in_message="--source-landmarks"),
    Row("landmarks/fewer-frames-than-video", "video",
        lambda ctx: {"--driving-landmarks": edited_landmarks("lp_d0.mp4", _fewer_frames)(ctx)},
        refused=("50 frames", "78"), name_in_message="--driving-landmarks", flags=("--crop-driving", "on")),
    Row("landmarks/more-frames-than-video", "video",
        lambda ctx: {"--driving-landmarks": edited_landmarks("lp_d0.mp4", _more_frames)(ctx)},
        refused=("88 frames", "78"), name_in_message="--driving-landmarks", flags=("--crop-driving", "on")),
    Row("landmarks/photo-file-for-a-video", "video", lambda ctx: {"--driving-landmarks": landmarks_json("astronaut.png")},
        refused=("1 frames", "78"), name_in_message="--driving-landmarks", flags=("--crop-driving", "on")),
]


# weights -------------------------------------------------------------------
WARPING = "liveportrait/base_models/warping_module.pth"


def damaged_weights(damage: Callable[[Path], None]):
    """A copy of the filled LivePortrait folder with one file damaged."""
    def make(ctx: Ctx) -> dict:
        folder = ctx.folder / "weights"
        shutil.copytree(ctx.lp_weights, folder)
        damage(folder / WARPING)
        return {"--weights": folder}
    return make


def _rename_key(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    key = sorted(state)[3]
    state[key.replace(".weight", ".weight_renamed").replace(".bias", ".bias_renamed")] = state.pop(key)
    torch.save(state, path)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _pickle_bomb(path: Path) -> None:
    torch.save({"weight": _Exploit(str(path.parent / "PWNED"))}, path)


def check_safetensors_shape(ctx: Ctx, options: dict) -> None:
    """A .safetensors checkpoint with one tensor of the wrong shape: the strict loader names file and key."""
    from safetensors.torch import save_file

    from talkinghead.models.stitching import stitching_mlp
    from talkinghead.weights import read_checkpoint
    from talkinghead.weights_strict import load_state_dict_strict

    mlp = stitching_mlp()
    state = {k: v.clone() for k, v in mlp.state_dict().items()}
    key = sorted(state)[0]
    state[key] = state[key].reshape(-1)[:-1].clone()
    path = ctx.folder / "stitching.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError, match=rf"stitching\.safetensors.*{key}.*has shape"):
        load_state_dict_strict(stitching_mlp(), read_checkpoint(path), str(path))


def evil_config(ctx: Ctx) -> dict:
    import pickle

    path = ctx.folder / "evil_cfg.pkl"
    path.write_bytes(pickle.dumps(_Exploit(str(ctx.folder / "PWNED"))))
    return {"--ditto-config": path}


def motion_file_with_wrong_shape(ctx: Ctx) -> dict:
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from talkinghead.motion.io import MotionFile, save_motion

    good = ctx.folder / "good.safetensors"
    save_motion(good, MotionFile(ctx.engine().prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png")).info.motion, 25.0))
    with safe_open(str(good), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(good))
    key = next(k for k in sorted(tensors) if k.endswith("exp"))
    tensors[key] = tensors[key].reshape(-1)[:10].clone()
    bad = ctx.folder / "motion.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    good.unlink()
    return {"--motion": bad, "--driving": None, "--source-landmarks": landmarks_json("astronaut.png")}


WEIGHT_ROWS = [
    Row("weights/missing-file", "still", damaged_weights(lambda p: p.unlink()),
        refused=("not found", "warping_module.pth")),
    Row("weights/renamed-key", "still", damaged_weights(_rename_key),
        refused=("warping_module.pth", "missing key", "unexpected key", "_renamed")),
    Row("weights/truncated-pth", "still", damaged_weights(lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
        refused=("warping_module.pth", "not a readable checkpoint")),
    Row("weights/code-executing-pickle", "still", damaged_weights(_pickle_bomb),
        refused=("warping_module.pth", "refused to load", "system")),
    Row("weights/git-lfs-pointer", "still",
        damaged_weights(lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\n")),
        refused=("warping_module.pth", "not a readable checkpoint", "git lfs pointer")),
    Row("weights/html-page-as-checkpoint", "still",
        damaged_weights(lambda p: p.write_text("<!DOCTYPE html><html><body>Rate limited</body></html>")),
        refused=("warping_module.pth", "not a readable checkpoint")),
    Row("weights/safetensors-wrong-shape", "still", lambda ctx: {}, check=check_safetensors_shape),
    Row("weights/code-executing-ditto-config", "audio", evil_config,
        refused=("evil_cfg.pkl", "refused to load", "system")),
    Row("motion-file/wrong-tensor-shape", "video", motion_file_with_wrong_shape,
        refused=("motion.safetensors",), name_in_message="--motion"),
    Row("motion-file/not-safetensors", "video",
        lambda ctx: {"--motion": text_file("motion.safetensors")(ctx), "--driving": None},
        refused=("motion.safetensors", "not a readable safetensors file")),
]

ROWS = IMAGE_ROWS + AUDIO_ROWS + VIDEO_ROWS + KEYFRAME_ROWS + LANDMARK_ROWS + WEIGHT_ROWS


def test_the_table_is_large_and_ids_are_unique() -> None:
    assert len(ROWS) >= 45
    assert len({r.id for r in ROWS}) == len(ROWS)


def _argv(template: dict, options: dict, flags: tuple[str, ...]) -> list[str]:
    merged = {**template, **{k: v for k, v in options.items() if k.startswith("--")}}
    argv = [merged.pop("")]
    for key, value in merged.items():
        if value is not None:
            argv += [key, str(value)]
    return argv + ["--device", "cpu", "--quiet", *flags]


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _reuse_engines(monkeypatch, ctx: Ctx) -> None:
    """The CLI gets the session's engines for the fixture weight folders instead of loading them again
    (rows about weights, and rows that inject a detector, load their own)."""
    from talkinghead.engine import Engine

    engines = {ctx.lp_weights: ctx.engine, ctx.all_weights: ctx.audio_engine}
    load = Engine.from_pretrained.__func__

    def from_pretrained(cls, weights=None, *args, **kwargs):
        made = engines.get(Path(weights)) if weights is not None else None
        return made() if made is not None else load(cls, weights, *args, **kwargs)

    monkeypatch.setattr(Engine, "from_pretrained", classmethod(from_pretrained))


def _with_detector(monkeypatch, provider) -> None:
    """The CLI's engine gets ``provider`` as its default landmark provider (Engine.from_pretrained's ``landmarks``)."""
    from talkinghead.engine import Engine

    load = Engine.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        return load(cls, *args, **{**kwargs, "landmarks": provider})

    monkeypatch.setattr(Engine, "from_pretrained", classmethod(from_pretrained))


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, tmp_path: Path, lp_weights_dir: Path, all_weights_dir: Path, engine, audio_engine,
                   capsys, monkeypatch) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    ctx = Ctx(folder, lp_weights_dir, all_weights_dir, engine, audio_engine)
    options = row.make(ctx)
    if not row.refused:
        assert row.check is not None
        row.check(ctx, options)
        return
    detector = options.get("--driving-landmarks", "") is None or options.get("--source-landmarks", "") is None
    if detector:
        _with_detector(monkeypatch, DlibLandmarks())  # an offline detector where the row gives no landmark file
    if not row.id.startswith("weights/") and not detector:
        _reuse_engines(monkeypatch, ctx)
    made = _listing(folder)
    argv = _argv(_jobs(ctx, out)[row.job], options, row.flags)
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1, f"exit {rc}, stderr:\n{err}"
    message = errors[0]
    for phrase in row.refused:
        assert phrase.lower() in message.lower(), f"{phrase!r} not in {message!r}"
    if row.name_in_message:
        assert Path(options[row.name_in_message]).name in message, message
    assert _listing(out) == [], "the output folder must stay empty"
    assert _listing(folder) == made, "nothing may be left beside the inputs"
    assert not (tmp_path / "PWNED").exists() and not any(p.name == "PWNED" for p in tmp_path.rglob("*"))


MISSING_INPUT_JOBS = [
    ("video", ["--source", "{photo}", "--driving", "{missing}", "--out", "{out}/a.mp4"], "--driving"),
    ("audio", ["--source", "{missing}", "--audio", "{speech}", "--out", "{out}/a.mp4"], "--source"),
    ("dub", ["--source", "{clip}", "--audio", "{missing}", "--out", "{out}/a.mp4"], "--audio"),
    ("pose", ["--source", "{photo}", "--source-landmarks", "{missing}", "--still", "{out}/a.png"], "--source-landmarks"),
    ("live", ["--source", "{photo}", "--audio", "{missing}", "--motion-only"], "--audio"),
]


@pytest.mark.parametrize("job, argv, flag", MISSING_INPUT_JOBS, ids=[row[0] for row in MISSING_INPUT_JOBS])
def test_a_missing_input_file_is_refused_before_any_weights_load(tmp_path: Path, capsys, monkeypatch, job: str,
                                                                 argv: list[str], flag: str) -> None:
    """A mistyped input path is one line naming the flag and the file, found before the weights load (or
    download: ~520 MB on a first run)."""
    from talkinghead.engine import Engine

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were loaded before the inputs were checked")

    monkeypatch.setattr(Engine, "from_pretrained", classmethod(no_weights))
    values = {"photo": str(ASTRONAUT), "speech": str(GERMAN), "clip": str(D9), "missing": str(tmp_path / "typo.xyz"),
              "out": str(tmp_path / "out")}
    assert main([job, *(arg.format(**values) for arg in argv)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert flag in errors[0] and "typo.xyz" in errors[0] and "not found" in errors[0], errors[0]
    assert not (tmp_path / "out").exists()
