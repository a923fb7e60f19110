"""The evaluation protocols: two videos compared frame by frame, self-reenactment and the audio job
over a folder of clips (resumable: a clip whose result file exists is read, not redone).

Self-reenactment (LivePortrait's and face-vid2vid's protocol): a clip's first frame is the source, the
clip drives it, the result is compared with the clip.  Audio: a clip's first frame and the clip's own
speech go through the audio job.  Our own glue over the public Engine API and the metric modules.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MediaError, TalkingHeadError
from ..face.crop import crop_box, driving_box
from ..face.landmarks import JsonLandmarks, LandmarkProvider
from ..jobs import RenderOptions
from ..media.video import VideoReader, probe_video
from .report_json import dumps_results, loads_results
from .syncnet import load_syncnet
from . import identity, metrics, motion_metrics, sync

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
FRAME_METRICS = ("psnr", "ssim", "l1", "lpips")


@dataclasses.dataclass
class EvalOptions:
    """``max_frames``: at most this many frames per clip (None: all); ``face_crop``: frame metrics on the
    512×512 face crop of the reference landmarks (as papers do); ``arcface``: an ArcFace ONNX file for CSIM
    (None: dlib's embedding); ``landmarks``: a folder of precomputed ``NAME.json`` landmark files;
    ``syncnet``: SyncNet weights (``syncnet_v2.model``) for Sync-C/Sync-D (None: skipped)."""

    max_frames: int | None = None
    face_crop: bool = False
    arcface: str | None = None
    landmarks: str | None = None
    device: str = "cpu"
    syncnet: str | None = None


class FrameLandmarks:
    """A landmark provider over per-frame (68, 2) points already found (``fallback`` where a frame has none)."""

    def __init__(self, points: list[np.ndarray | None], fallback: list[np.ndarray | None]) -> None:
        self.points = [p if p is not None else f for p, f in zip(points, fallback)]

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        """The points of frame ``frame_index`` (None outside the frames kept)."""
        return self.points[frame_index] if frame_index < len(self.points) else None


def mean(values: list[float | None]) -> float | None:
    """Mean of the non-None values (``inf`` kept, e.g. PSNR of identical frames), None when there are none."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def check_pair(pred: str | os.PathLike, ref: str | os.PathLike) -> None:
    """Check that ``pred`` and ``ref`` are readable videos of one frame rate (within 0.1%), what
    :meth:`Evaluator.compare` needs; raises MediaError naming the file and what to do."""
    pi, ri = probe_video(pred), probe_video(ref)
    if abs(pi.fps - ri.fps) > 1e-3 * ri.fps:
        raise MediaError(f"{pred} runs at {pi.fps:g} fps but {ref} at {ri.fps:g} fps: compare videos of one rate")


class Evaluator:
    """The metric networks, loaded once: LPIPS, dlib's landmarks/embeddings, ArcFace, SyncNet (with
    ``options.syncnet``; WeightsError on a wrong file), and ``engine`` (its motion extractor M for AED/APD,
    None: skipped)."""

    def __init__(self, engine, options: EvalOptions = EvalOptions()) -> None:
        self.engine, self.options = engine, options
        self.lpips = metrics.Lpips(options.device)
        try:
            self.dlib: identity.DlibFaces | None = identity.DlibFaces()
        except MediaError as e:
            self.dlib, self.dlib_reason = None, str(e)
        self.embedder = identity.ArcFace(options.arcface) if options.arcface else self.dlib
        self.csim_model = ("ArcFace " + Path(options.arcface).name if options.arcface else
                           "dlib_face_recognition_resnet_model_v1" if self.dlib else None)
        self.syncnet = load_syncnet(options.syncnet, options.device) if options.syncnet else None

    def provider(self, spec: str | os.PathLike | None, video: Path) -> LandmarkProvider | None:
        """Landmarks of ``video``: a provider or a file, else ``<landmarks folder>/<name>.json``, else dlib (None: none)."""
        if spec is None and self.options.landmarks and (Path(self.options.landmarks) / f"{video.name}.json").exists():
            spec = Path(self.options.landmarks) / f"{video.name}.json"
        if spec is None:
            return self.dlib
        return JsonLandmarks(spec) if isinstance(spec, (str, os.PathLike)) else spec

    def embedding(self, frame: np.ndarray, points: np.ndarray | None) -> np.ndarray | None:
        """Identity embedding of the face with ``points`` (None without a face or a model)."""
        return None if points is None or self.embedder is None else self.embedder.embedding(frame, points)

    def sync_metrics(self, video: Path, points: list[np.ndarray | None]) -> tuple[dict, dict, list]:
        """Sync-C, Sync-D and the offset (frames at 25 fps) of ``video`` with its audio track (:mod:`.sync`),
        cropped with ``points`` (per decoded frame, None: nearest frame's).

        Returns ``(values, skipped reasons, per-window confidence)``; all empty without SyncNet weights;
        values None with the reason when the video cannot be scored (too short, no audio, no face).
        """
        names = ("sync_c", "sync_d", "sync_offset")
        if self.syncnet is None:
            return {}, {}, []
        try:
            result = sync.score_video(self.syncnet, video, FrameLandmarks(points, points), self.options.max_frames)
        except TalkingHeadError as e:
            return dict.fromkeys(names), dict.fromkeys(names, f"SyncNet scoring failed: {e}"), []
        values = {"sync_c": result.sync_c, "sync_d": result.sync_d, "sync_offset": result.offset}
        return values, {}, [float(c) for c in result.frame_confidence]

    def compare(self, pred: str | os.PathLike, ref: str | os.PathLike, pred_landmarks=None, ref_landmarks=None,
                progress: Callable | None = None) -> dict:
        """Frame-aligned metrics of ``pred`` against ``ref`` (same rate; the shorter length, ≤ max_frames).

        Returns ``{"frames": n, "per_frame": {metric: [...]}, "metrics": {metric: mean | None},
        "skipped": {metric: reason}}`` (with SyncNet weights also Sync-C/Sync-D of ``pred`` with its own
        audio track, see :meth:`sync_metrics`).  Raises MediaError (unreadable videos, different frame rates).
        """
        pred, ref = Path(pred), Path(ref)
        check_pair(pred, ref)
        per_frame, marks = self._frame_pass(pred, ref, self.provider(pred_landmarks, pred),
                                            self.provider(ref_landmarks, ref), progress)
        skipped = self._motion_pass(pred, ref, marks, per_frame)
        result = summarize(per_frame, {**skipped, **self._frame_skips(per_frame)})
        values, reasons, confidence = self.sync_metrics(pred, FrameLandmarks(*marks).points)  # of pred's own audio
        result["metrics"].update(values)
        result["skipped"].update(reasons)
        if confidence:
            result["per_frame"]["sync_confidence"] = confidence
        return result

    def _frame_pass(self, pred: Path, ref: Path, pred_marks, ref_marks, progress) -> tuple[dict, tuple[list, list]]:
        """Stream both videos once: frame metrics, AKD and CSIM per frame; the landmarks found, kept."""
        per_frame: dict[str, list] = {m: [] for m in (*FRAME_METRICS, "akd", "csim")}
        found: tuple[list, list] = ([], [])
        n = self.options.max_frames
        with VideoReader(pred, max_frames=n) as a, VideoReader(ref, max_frames=n) as b:
            for i, (p, r) in enumerate(zip(a, b)):
                pp = pred_marks.landmarks(p, i) if pred_marks else None
                rp = ref_marks.landmarks(r, i) if ref_marks else None
                found[0].append(pp)
                found[1].append(rp)
                fp, fr = (crop_box(p, driving_box(rp)).crop, crop_box(r, driving_box(rp)).crop) \
                    if self.options.face_crop and rp is not None and p.shape == r.shape else (p, r)
                if fp.shape != fr.shape:
                    raise MediaError(f"{pred} is {p.shape[1]}x{p.shape[0]} but {ref} is {r.shape[1]}x{r.shape[0]}: "
                                     "compare videos of one size, or use --face-crop")
                for name, fn in (("psnr", metrics.psnr), ("ssim", metrics.ssim), ("l1", metrics.l1), ("lpips", self.lpips)):
                    per_frame[name].append(fn(fp, fr))
                per_frame["akd"].append(identity.keypoint_distance(pp, rp) if pp is not None and rp is not None else None)
                ep, er = self.embedding(p, pp), self.embedding(r, rp)
                per_frame["csim"].append(identity.cosine(ep, er) if ep is not None and er is not None else None)
                if progress:
                    progress(1)
        return per_frame, found

    def _motion_pass(self, pred: Path, ref: Path, marks: tuple[list, list], per_frame: dict) -> dict[str, str]:
        """AED/APD from M's motion of both videos (pred cropped with its landmarks, else the reference's)."""
        if self.engine is None:
            return {"aed": "no motion extractor (LivePortrait weights not loaded)", "apd": "see aed"}
        n = len(marks[1])
        try:
            mp = self.engine.extract_motion(pred, landmarks=FrameLandmarks(marks[0], marks[1]), max_frames=n)
            mr = self.engine.extract_motion(ref, landmarks=FrameLandmarks(marks[1], marks[1]), max_frames=n)
        except TalkingHeadError as e:
            return {"aed": f"motion extraction failed: {e}", "apd": "see aed"}
        per_frame["aed"] = motion_metrics.expression_distance(mp, mr)
        per_frame["apd"] = motion_metrics.pose_distance(mp, mr)
        return {}

    def _frame_skips(self, per_frame: dict) -> dict[str, str]:
        skips = {}
        if not self.lpips.available:
            skips["lpips"] = self.lpips.reason
        if all(v is None for v in per_frame["akd"]):
            skips["akd"] = "no frame with landmarks in both videos (give --pred-landmarks/--ref-landmarks)"
        if all(v is None for v in per_frame["csim"]):
            skips["csim"] = "no identity model" if self.embedder is None else "no frame with a face in both videos"
        return skips


def summarize(per_frame: dict[str, list], skipped: dict[str, str]) -> dict:
    """One clip's result: per-frame values, their means (None where skipped) and the reasons."""
    means = {name: mean(values) for name, values in per_frame.items()}
    return {"frames": max((len(v) for v in per_frame.values()), default=0), "per_frame": per_frame,
            "metrics": means, "skipped": {k: v for k, v in skipped.items() if means.get(k) is None}}


def clips_in(folder: str | os.PathLike) -> list[Path]:
    """The video files of a folder, sorted by name; raises MediaError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"--clips {folder} is not a folder")
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise MediaError(f"--clips {folder} holds no video ({', '.join(VIDEO_SUFFIXES)})")
    return clips


def run_folder(clips: list[Path], out: Path, run_clip: Callable[[Path, Path], dict], progress=None) -> dict[str, dict]:
    """``run_clip(clip, out/clips)`` for each clip, its result kept in ``out/clips/NAME.json`` (written
    atomically); a clip whose file exists is read instead (resumability).  Returns {name: result}."""
    results = {}
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for clip in clips:
        path = out / "clips" / f"{clip.stem}.json"
        if path.exists():
            results[clip.stem] = {**loads_results(path.read_text()), "resumed": True}
        else:
            result = run_clip(clip, out / "clips")
            tmp = path.with_suffix(".json.part")
            tmp.write_text(dumps_results(result))
            tmp.replace(path)
            results[clip.stem] = result
        if progress:
            progress(1)
    return results


def first_frame(clip: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB first frame of a clip; raises MediaError when it has none."""
    with VideoReader(clip, max_frames=1) as reader:
        for frame in reader:
            return frame
    raise MediaError(f"{clip} has no frames")


def self_reenact(evaluator: Evaluator, clip: Path, out: Path) -> dict:
    """Self-reenactment of one clip: its first frame driven by the clip, compared with the clip."""
    engine, marks = evaluator.engine, evaluator.provider(None, clip)
    source = engine.prepare_source(first_frame(clip), landmarks=marks)
    render = RenderOptions(max_frames=evaluator.options.max_frames)
    started = time.perf_counter()
    job = engine.animate_video(source, clip, render=render, driving_landmarks=marks)
    video = engine.write_video(job, out / f"{clip.stem}.mp4", progress=False)
    result = evaluator.compare(video, clip, ref_landmarks=marks if isinstance(marks, JsonLandmarks) else None)
    result["seconds_per_frame"] = (time.perf_counter() - started) / max(result["frames"], 1)
    return result


def cross_reenact(evaluator: Evaluator, clip: Path, out: Path, photo: Path) -> dict:
    """Cross-reenactment: ``photo`` driven by ``clip``; CSIM of each frame to the photo, AED/APD of the
    result's motion (M, cropped with the photo's landmarks) against the clip's."""
    from ..media.image import load_image

    engine, marks = evaluator.engine, evaluator.provider(None, clip)
    image, photo_marks = load_image(photo), evaluator.provider(None, photo)
    points = photo_marks.landmarks(image, 0) if photo_marks else None
    source = engine.prepare_source(image, landmarks=photo_marks)
    job = engine.animate_video(source, clip, render=RenderOptions(max_frames=evaluator.options.max_frames),
                               driving_landmarks=marks)
    video = engine.write_video(job, out / f"{clip.stem}.mp4", progress=False)
    reference = evaluator.embedding(image, points)
    with VideoReader(video) as reader:
        csim = [identity.cosine(reference, evaluator.embedding(f, points)) if reference is not None else None
                for f in reader]
    n = len(csim)
    mp = engine.extract_motion(video, landmarks=FrameLandmarks([points] * n, [points] * n), max_frames=n)
    mr = engine.extract_motion(clip, landmarks=marks, max_frames=n)
    per_frame = {"csim": csim, "aed": motion_metrics.expression_distance(mp, mr),
                 "apd": motion_metrics.pose_distance(mp, mr)}
    result = summarize(per_frame, {"csim": "no face in the source photo or no identity model"})
    return {**result, "source": photo.name}


def sync_skips(results: dict[str, dict], syncnet: str | None) -> dict[str, str]:
    """Run-level reasons for ``sync_c``/``sync_d``/``sync_offset`` of the audio protocol: without weights
    (:data:`report.SYNC_REASON`), or when every clip was resumed from a run without them; {} otherwise
    (each clip then has its values or its own reason)."""
    from .report import SYNC_REASON

    names = ("sync_c", "sync_d", "sync_offset")
    if not syncnet:
        return dict.fromkeys(names, SYNC_REASON)
    if results and not any("sync_c" in r["metrics"] for r in results.values()):
        return dict.fromkeys(names, "all clips were resumed from a run without --syncnet (delete OUT/clips/*.json "
                                    "to score them)")
    return {}


def _or_source(found: list, video: Path, source: np.ndarray, points: np.ndarray | None) -> list:
    """The generated frames' landmarks, a frame without a face taking the source photo's ``points``
    (the pasted-back output keeps the photo's framing) when the video is the photo's size."""
    info = probe_video(video)
    fill = points if (info.width, info.height) == (source.shape[1], source.shape[0]) else None
    return [p if p is not None else fill for p in found]


def audio_clip(evaluator: Evaluator, clip: Path, out: Path) -> dict:
    """The audio job on one clip (first frame + the clip's speech): CSIM to the source, blink rate, pose
    diversity, keypoint jitter, real-time factor (render seconds / video seconds), and with SyncNet weights
    Sync-C/Sync-D/offset of the result with its own audio (face boxes: the generated frames' landmarks)."""
    engine, marks = evaluator.engine, evaluator.provider(None, clip)
    frame = first_frame(clip)
    source = engine.prepare_source(frame, landmarks=marks, settings=engine.audio_source_settings())
    source_points = (marks or evaluator.dlib).landmarks(frame, 0) if (marks or evaluator.dlib) else None
    started = time.perf_counter()
    job = engine.animate_audio(source, clip, render=RenderOptions(max_frames=evaluator.options.max_frames))
    video = engine.write_video(job, out / f"{clip.stem}.mp4", progress=False)
    seconds = time.perf_counter() - started
    found = [evaluator.dlib.landmarks(f, i) if evaluator.dlib else None for i, f in enumerate(VideoReader(video))]
    source_embedding = evaluator.embedding(frame, source_points)
    csim = [identity.cosine(source_embedding, e) if e is not None and source_embedding is not None else None
            for e in (evaluator.embedding(f, p) for f, p in zip(VideoReader(video), found))]
    motion = job.motion[: job.n_frames]
    diversity = motion_metrics.pose_diversity(motion)
    sync_points = _or_source(found, video, frame, source_points)
    sync_values, sync_reasons, sync_confidence = evaluator.sync_metrics(video, sync_points)
    values = {"csim": mean(csim), "blink_rate": motion_metrics.blink_rate(found, job.fps),
              "pose_std_yaw": diversity["yaw"], "pose_std_pitch": diversity["pitch"], "pose_std_roll": diversity["roll"],
              "jitter": motion_metrics.keypoint_jitter(motion, source.info.kp),
              "rtf": seconds / (job.n_frames / job.fps), **sync_values}
    skipped = {"csim": "no face found in the generated frames or the source",
               "blink_rate": "fewer than 2 generated frames with a face", "jitter": "fewer than 3 frames",
               **sync_reasons}
    per_frame = {"csim": csim, **({"sync_confidence": sync_confidence} if sync_confidence else {})}
    return {"frames": job.n_frames, "per_frame": per_frame, "metrics": values,
            "skipped": {k: v for k, v in skipped.items() if values[k] is None}}

