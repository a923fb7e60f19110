"""Command-line interface: argument parsing only; the work is done by :mod:`talkinghead.engine`.

Usage::

    python -m talkinghead video --source PHOTO --driving CLIP --out OUT.mp4 [options]

Exit status: 0 on success, 2 on a user error (one line on stderr saying what
was wrong; no output file is left behind), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import TalkingHeadError


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    """Options every job shares: source photo, output, weights, device."""
    p.add_argument("--source", required=True, help="portrait photo (jpg/png/webp…)")
    p.add_argument("--out", required=True, help="output video file (.mp4)")
    p.add_argument("--source-landmarks", metavar="FILE.json",
                   help="precomputed 68-point landmarks of the photo (format of shared/testdata/landmarks); default: detect with face-alignment")
    p.add_argument("--weights", metavar="DIR",
                   help="local folder laid out like the Hub repos (DIR/liveportrait/...); default: ./checkpoints, then the Hugging Face Hub cache")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="where the networks run (default: cuda if available)")
    p.add_argument("--max-frames", type=_positive_int, metavar="N", help="render at most N frames")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                   help="frames rendered together (default: 8 on CUDA, 1 on CPU)")
    p.add_argument("--no-paste-back", dest="paste_back", action="store_false",
                   help="write the 512x512 face crop instead of pasting it back into the photo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="photo + driving video -> talking-head video",
                       description="Animate a portrait photo with the head motion and expressions of a driving video.")
    _add_common(p)
    driver = p.add_mutually_exclusive_group(required=True)
    driver.add_argument("--driving", help="driving video (any container/codec FFmpeg reads)")
    driver.add_argument("--motion", metavar="FILE.safetensors",
                        help="a motion file (from --save-motion of either job) to use as the driving motion")
    p.add_argument("--save-motion", metavar="FILE.safetensors",
                   help="also save the driving video's motion (a reusable driving template)")
    p.add_argument("--driving-landmarks", metavar="FILE.json",
                   help="precomputed 68-point landmarks of every driving frame (format of shared/testdata/landmarks)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--relative", dest="relative", action="store_true", default=True,
                      help="transfer motion relative to the first driving frame (default)")
    mode.add_argument("--absolute", dest="relative", action="store_false",
                      help="use the driving pose and expression as they are")
    p.add_argument("--no-stitching", dest="stitching", action="store_false",
                   help="skip the stitching network (shoulders may drift from the pasted-back body)")
    p.add_argument("--driving-multiplier", type=float, default=1.0, metavar="X",
                   help="scale of the transferred motion (default 1.0; <1 damps, >1 exaggerates)")
    p.add_argument("--region", choices=("all", "exp", "pose", "lip", "eyes"), default="all",
                   help="which part of the motion to transfer (default all)")
    p.add_argument("--pose-friendly", dest="expression_friendly", action="store_false",
                   help="do not rescale the driving expression to the source face's keypoint volume")
    p.add_argument("--eye-retargeting", action="store_true", help="drive the eyes by the driving eye-open ratio")
    p.add_argument("--lip-retargeting", action="store_true", help="drive the lips by the driving lip-open ratio")
    p.add_argument("--crop-driving", choices=("auto", "on", "off"), default="auto",
                   help="crop the face out of each driving frame (auto: only when the video is not square)")


def _add_audio(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audio", help="photo + speech -> lip-synced talking video",
                       description="Animate a portrait photo from a speech recording (Ditto-compatible audio-to-motion).")
    _add_common(p)
    p.add_argument("--audio", required=True, help="speech recording (wav, mp3, m4a, ogg, flac, webm…)")
    p.add_argument("--steps", type=_positive_int, default=10, help="diffusion sampling steps per window (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same video (default 0)")
    p.add_argument("--emotion", default="neutral",
                   help="angry, disgust, fear, happy, neutral, sad, surprise or contempt (default neutral)")
    p.add_argument("--expression-scale", type=float, default=1.0, metavar="X",
                   help="gain on the generated expression, 0..3 (default 1)")
    head = p.add_mutually_exclusive_group()
    head.add_argument("--still", action="store_true", help="keep the photo's head pose; only the face moves")
    head.add_argument("--pose-from", metavar="CLIP",
                      help="short video of the same person whose head motion is used (personalized pose)")
    p.add_argument("--pose-from-landmarks", metavar="FILE.json", help="68-point landmarks of the --pose-from clip")
    p.add_argument("--pose-blend", type=float, default=1.0, metavar="B",
                   help="0 = generated head pose, 1 = the --pose-from clip's pose (default 1)")
    p.add_argument("--save-motion", metavar="FILE.safetensors", help="also save the generated motion sequence")
    p.add_argument("--motion", metavar="FILE.safetensors",
                   help="render this motion file (from --save-motion) instead of generating motion; --audio is the soundtrack")


def build_parser() -> argparse.ArgumentParser:
    """The ``talkinghead`` argument parser (one subcommand per job)."""
    parser = argparse.ArgumentParser(prog="python -m talkinghead", description="One portrait photo in, a talking-head video out.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{video,audio}")
    _add_video(sub)
    _add_audio(sub)
    return parser


def _run_video(args: argparse.Namespace) -> None:
    from .engine import Engine
    from .media.video import probe_video
    from .motion.animate import AnimationOptions
    from .motion.io import MotionFile, load_motion, save_motion

    options = AnimationOptions(
        relative=args.relative,
        region=args.region,
        stitching=args.stitching,
        eye_retargeting=args.eye_retargeting,
        lip_retargeting=args.lip_retargeting,
        expression_friendly=args.expression_friendly,
        driving_multiplier=args.driving_multiplier,
    )
    engine = Engine.from_pretrained(weights=args.weights, device=args.device, progress=not args.quiet)
    source = engine.prepare_source(args.source, landmarks=args.source_landmarks)
    if args.motion:
        saved = load_motion(args.motion)
        job = engine.animate_driving_motion(source, saved.motion, saved.fps, options, max_frames=args.max_frames,
                                            paste_back=args.paste_back, batch_size=args.batch_size)
    else:
        if args.save_motion:
            motion = engine.extract_motion(args.driving, landmarks=args.driving_landmarks,
                                           max_frames=args.max_frames, crop=args.crop_driving)
            save_motion(args.save_motion, MotionFile(motion, probe_video(args.driving).fps))
        job = engine.animate_video(
            source, args.driving, options,
            driving_landmarks=args.driving_landmarks, max_frames=args.max_frames,
            paste_back=args.paste_back, crop_driving=args.crop_driving, batch_size=args.batch_size,
        )
    engine.write_video(job, args.out, progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {args.out} ({job.n_frames} frames, {job.fps:g} fps)", file=sys.stderr)


def _run_audio(args: argparse.Namespace) -> None:
    from .drivers.audio.driver import AudioDriver, AudioDriverOptions
    from .engine import AudioJobOptions, Engine
    from .motion.io import MotionFile, load_motion, save_motion

    options = AudioJobOptions(
        driver=AudioDriverOptions(steps=args.steps, seed=args.seed, emotion=args.emotion),
        expression_scale=args.expression_scale, still=args.still, pose_from=args.pose_from,
        pose_from_landmarks=args.pose_from_landmarks, pose_blend=args.pose_blend,
    )
    engine = Engine.from_pretrained(weights=args.weights, device=args.device, progress=not args.quiet)
    source = engine.prepare_source(args.source, landmarks=args.source_landmarks)
    saved = load_motion(args.motion) if args.motion else None
    job = engine.animate_audio(source, args.audio, options, motion=saved.motion if saved else None,
                               fps=saved.fps if saved else AudioDriver.fps, max_frames=args.max_frames,
                               paste_back=args.paste_back, batch_size=args.batch_size, progress=not args.quiet)
    if args.save_motion:
        save_motion(args.save_motion, MotionFile(job.motion.to("cpu"), job.fps, source=source.info.to("cpu")))
    engine.write_video(job, args.out, progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {args.out} ({job.n_frames} frames, {job.fps:g} fps)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the job. Returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        {"video": _run_video, "audio": _run_audio}[args.command](args)
    except TalkingHeadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
