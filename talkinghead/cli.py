"""Command-line interface: argument parsing only; the work is done by :mod:`talkinghead.engine`.

Usage::

    python -m talkinghead video --source PHOTO|VIDEO --driving CLIP --out OUT.mp4 [--keyframes EDITS.json] [options]
    python -m talkinghead audio --source PHOTO --audio SPEECH --out OUT.mp4 [--keyframes EDITS.json] [options]
    python -m talkinghead dub   --source VIDEO --audio SPEECH --out OUT.mp4 [--keyframes EDITS.json] [options]
    python -m talkinghead pose  --source PHOTO (--keyframes FILE.json --out OUT.mp4 | --still OUT.png) [--yaw 15 --smile 0.5 …]
    python -m talkinghead live  --source PHOTO --audio SPEECH [--realtime] [--chunk-ms N] (--out OUT.mp4 | --motion-only [--save-motion M.safetensors])
    python -m talkinghead batch JOBS.jsonl --out DIR [--ray ADDRESS] [--workers N] [--retries K]
    python -m talkinghead verify FILE [--json]
    python -m talkinghead eval compare --pred A.mp4 --ref B.mp4 --out REPORT.json | eval reenact|audio --clips DIR --out DIR

Every output carries a signed C2PA manifest declaring it AI-generated
(``--no-provenance`` opts out; ``--c2pa-key``/``--c2pa-cert`` sign with your
own credential); ``verify`` prints what a file's manifest says.

Exit status: 0 on success, 2 on a user error (one line on stderr saying what
was wrong; no output file is left behind), 130 when interrupted (Ctrl-C),
143 when stopped by SIGTERM (e.g. a container shutting down; the partial
output is removed as for Ctrl-C).

Every option and output path is checked before any work (:func:`check_job`):
value ranges, the video, audio and dub jobs' ``--keyframes`` file (read once, there), the output suffix, an output that is one of the inputs, an
output location that cannot be written (read-only, full disk), ``--device
cuda`` without a GPU.  Then every input file is checked to exist and not to be
empty (:func:`check_inputs`), still before the weights load (or download).
Missing folders of an output path are created.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from .drivers.audio import AUDIO_BACKENDS
from .errors import ControlError, TalkingHeadError
from .evaluation.command import add_eval_parser, run_eval
from .options import add_option

_FLAG_NAMES = {"x": "head-x", "y": "head-y", "scale": "head-scale"}
"""Control name → CLI flag name where the bare name would be unclear."""


def _au(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip().upper(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AU=INTENSITY such as AU12=0.6, got {text!r}") from None


def _add_common(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    """Options every job shares: source photo, output, weights, device, rendering, controls."""
    from .jobs import EngineOptions, RenderOptions
    from .motion.smoothing import SmoothingOptions

    p.add_argument("--source", required=True,
                   help="portrait photo (jpg/png/webp…); `video` also takes a video of a face (any file FFmpeg reads "
                        "as a video of more than one frame), re-animated frame by frame, with --source-landmarks "
                        "then holding the landmarks of every frame")
    p.add_argument("--out", required=out_required, help="output video file (.mp4)")
    p.add_argument("--source-landmarks", metavar="FILE.json",
                   help="precomputed 68-point landmarks of the photo (format of tests/data/testdata/landmarks); default: detect with face-alignment")
    p.add_argument("--weights", metavar="DIR",
                   help="local folder laid out like the Hub repos (DIR/liveportrait/..., DIR/ditto_pytorch/...); default: ./checkpoints, then the Hugging Face Hub cache")
    p.add_argument("--revision", metavar="REV",
                   help="Hub revision (branch, tag or commit sha) of the LivePortrait weights (KlingTeam/LivePortrait); "
                        "overrides TALKINGHEAD_LIVEPORTRAIT_REVISION (default main)")
    p.add_argument("--ditto-revision", metavar="REV",
                   help="Hub revision of the audio job's Ditto weights (digital-avatar/ditto-talkinghead); "
                        "overrides TALKINGHEAD_DITTO_REVISION")
    p.add_argument("--enhance-revision", metavar="REV",
                   help="Hub revision of the --enhance/--upscale weights' repos (files are sha256-verified anyway); "
                        "overrides TALKINGHEAD_ENHANCE_REVISION")
    add_option(p, EngineOptions, "device")
    add_option(p, EngineOptions, "precision")
    add_option(p, EngineOptions, "compile")
    add_option(p, RenderOptions, "max_frames", metavar="N")
    add_option(p, RenderOptions, "batch_size", metavar="B")
    add_option(p, RenderOptions, "paste_back")
    add_option(p, SmoothingOptions, "pose", dest="smooth", metavar="S")
    add_option(p, SmoothingOptions, "expression", default=None, metavar="S",
               help="expression smoothing strength; default: same as --smooth")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_provenance(p)
    _add_enhance(p)
    _add_controls(p)


def _add_provenance(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("provenance (C2PA content credentials marking the output as AI-generated)")
    group.add_argument("--no-provenance", dest="provenance", action="store_false",
                       help="write outputs without a C2PA manifest (they are then not marked as AI-generated)")
    group.add_argument("--c2pa-key", metavar="KEY.pem",
                       help="PEM private key to sign the manifest with (default $TALKINGHEAD_C2PA_KEY, else a "
                            "credential generated on this machine, which declares but does not prove)")
    group.add_argument("--c2pa-cert", metavar="CHAIN.pem",
                       help="PEM certificate chain of --c2pa-key, signing certificate first "
                            "(default $TALKINGHEAD_C2PA_CERT)")


def _add_enhance(p: argparse.ArgumentParser) -> None:
    from .enhance.options import EnhanceOptions

    group = p.add_argument_group("face restoration and super-resolution")
    add_option(group, EnhanceOptions, "restorer")
    add_option(group, EnhanceOptions, "weight", metavar="W")
    add_option(group, EnhanceOptions, "fidelity", metavar="F")
    add_option(group, EnhanceOptions, "upscale")
    add_option(group, EnhanceOptions, "tile", metavar="PX")


def _add_controls(p: argparse.ArgumentParser) -> None:
    from .motion.controls import CONTROL_SPECS

    group = p.add_argument_group("pose and expression controls (stacked on every frame)")
    for name, spec in CONTROL_SPECS.items():
        group.add_argument(f"--{_FLAG_NAMES.get(name, name.replace('_', '-'))}", dest=f"control_{name}", type=float,
                           metavar="V", help=f"{spec.low:g}..{spec.high:g} {spec.unit} (neutral {spec.neutral:g})")
    group.add_argument("--au", action="append", type=_au, default=[], metavar="AU=I",
                       help="facial action unit intensity 0..1, e.g. --au AU12=0.6 (repeatable)")


def _add_video(sub: argparse._SubParsersAction) -> None:
    from .drivers.video import DrivingCrop
    from .motion.animate import AnimationOptions

    p = sub.add_parser("video", help="photo + driving video -> talking-head video",
                       description="Animate a portrait photo with the head motion and expressions of a driving video.")
    _add_common(p)
    p.add_argument("--driving", help="driving video (any container/codec FFmpeg reads)")
    p.add_argument("--motion", metavar="FILE.safetensors",
                   help="a motion file (from --save-motion of either job) to use as the driving motion "
                        "(with --driving too: only for the regions that name it, e.g. --eyes motion)")
    p.add_argument("--save-motion", metavar="FILE.safetensors",
                   help="also save the driving video's motion (a reusable driving template)")
    p.add_argument("--driving-landmarks", metavar="FILE.json",
                   help="precomputed 68-point landmarks of every driving frame (format of tests/data/testdata/landmarks)")
    add_option(p, AnimationOptions, "relative")  # --relative / --absolute
    add_option(p, AnimationOptions, "stitching")  # --no-stitching
    add_option(p, AnimationOptions, "driving_multiplier", metavar="X")
    add_option(p, AnimationOptions, "region")
    add_option(p, AnimationOptions, "expression_friendly")  # --pose-friendly
    add_option(p, AnimationOptions, "eye_retargeting")
    add_option(p, AnimationOptions, "lip_retargeting")
    add_option(p, DrivingCrop, "crop_driving")
    add_option(p, DrivingCrop, "driving_box")
    _add_regions(p, "video")
    _add_timeline(p)


def _add_regions(p: argparse.ArgumentParser, job: str) -> None:
    """``--head/--eyes/--brows/--mouth/--rest {source,video,audio,motion}`` and the other job's driver input."""
    from .motion.regions import RegionSources
    from .options import option_fields

    group = p.add_argument_group("driver mixing by face region (README: Mixing drivers by face region)")
    for name in option_fields(RegionSources):
        add_option(group, RegionSources, name)
    if job == "video":
        from .jobs import AudioJobOptions

        group.add_argument("--audio", metavar="SPEECH", help="speech whose generated motion drives the regions "
                                                             "set to audio (e.g. --mouth audio); also the soundtrack")
        add_option(group, AudioJobOptions, "steps", metavar="N")   # the speech's motion generation, as the audio job's
        add_option(group, AudioJobOptions, "seed", metavar="SEED")
    else:
        group.add_argument("--driving", metavar="CLIP", help="a driving video for the regions set to video "
                                                             "(e.g. --head video --eyes video)")
        group.add_argument("--driving-landmarks", metavar="FILE.json", help="68-point landmarks of the --driving clip")


def _add_generation(p: argparse.ArgumentParser) -> None:
    """The speech-to-motion generation flags of every job that generates from speech (audio, dub, live)."""
    from .jobs import AudioJobOptions

    add_option(p, AudioJobOptions, "steps", metavar="N")
    add_option(p, AudioJobOptions, "seed", metavar="SEED")
    add_option(p, AudioJobOptions, "emotion", metavar="EMOTION")
    add_option(p, AudioJobOptions, "blinks")
    add_option(p, AudioJobOptions, "expression_scale", metavar="X")


def _add_audio(sub: argparse._SubParsersAction) -> None:
    from .jobs import AudioJobOptions

    p = sub.add_parser("audio", help="photo + speech -> lip-synced talking video",
                       description="Animate a portrait photo from a speech recording (Ditto-compatible audio-to-motion).")
    _add_common(p)
    p.add_argument("--audio", required=True, help="speech recording (wav, mp3, m4a, ogg, flac, webm…)")
    p.add_argument("--audio-backend", choices=tuple(AUDIO_BACKENDS), default=AudioJobOptions.backend,
                   help="speech-to-motion model (default ditto; --ditto-config, --steps, --emotion and --blinks are Ditto's)")
    p.add_argument("--ditto-config", metavar="FILE.pkl",
                   help="a Ditto configuration pickle to use instead of Ditto's shipped "
                        "ditto_cfg/v0.4_hubert_cfg_pytorch.pkl (read safely: plain data only)")
    _add_generation(p)
    head = p.add_mutually_exclusive_group()
    add_option(head, AudioJobOptions, "still_head")
    head.add_argument("--pose-from", metavar="CLIP",
                      help="short video of the same person whose head motion is used (personalized pose)")
    p.add_argument("--pose-from-landmarks", metavar="FILE.json", help="68-point landmarks of the --pose-from clip")
    add_option(p, AudioJobOptions, "pose_blend", metavar="B")
    head.add_argument("--pose-style", metavar="CLIP",
                      help="keep the generated, speech-synchronised head motion but give it the style (mean pose, "
                           "spread, tempo) of CLIP, a video of the person or a saved pose style (.safetensors)")
    p.add_argument("--pose-style-landmarks", metavar="FILE.json", help="68-point landmarks of the --pose-style clip")
    add_option(p, AudioJobOptions, "pose_style_tempo", metavar="T")
    add_option(p, AudioJobOptions, "pose_style_keep_mean")
    p.add_argument("--save-motion", metavar="FILE.safetensors", help="also save the generated motion sequence")
    p.add_argument("--motion", metavar="FILE.safetensors",
                   help="render this motion file (from --save-motion) instead of generating motion; --audio is the soundtrack")
    _add_regions(p, "audio")
    _add_timeline(p)


def _add_dub(sub: argparse._SubParsersAction) -> None:
    from .dub_job import DubOptions
    from .jobs import AudioJobOptions

    p = sub.add_parser("dub", help="video of a face + new speech -> dubbed video (the mouth follows the speech)",
                       description="Put new speech on a video of a face (--source VIDEO): each frame keeps its own "
                                   "head pose, eyes and expression, the mouth follows the speech (back to the video's "
                                   "own in silence); the output has the speech's length (a shorter video is played "
                                   "back and forth, a longer one cut) and carries the speech as its audio track.")
    _add_common(p)
    p.add_argument("--audio", required=True, help="the new speech (wav, mp3, m4a, ogg, flac, webm…)")
    p.add_argument("--audio-backend", choices=tuple(AUDIO_BACKENDS), default=AudioJobOptions.backend,
                   help="speech-to-motion model (default ditto)")
    p.add_argument("--ditto-config", metavar="FILE.pkl", help="a Ditto configuration pickle (as for the audio job)")
    _add_generation(p)
    add_option(p, DubOptions, "mouth_gain", metavar="G")
    add_option(p, DubOptions, "mouth_base")
    # the head comes from the video: the audio job's head options keep their defaults
    p.set_defaults(**{name: getattr(AudioJobOptions, name) for name in (
        "still_head", "pose_from", "pose_from_landmarks", "pose_blend", "pose_style", "pose_style_landmarks",
        "pose_style_tempo", "pose_style_keep_mean")})
    _add_timeline(p)


def _add_live(sub: argparse._SubParsersAction) -> None:
    from .jobs import AudioJobOptions
    from .live_job import LiveOptions
    from .motion.idle import IdleOptions
    from .options import option_fields

    p = sub.add_parser("live", help="replay speech as a live stream: frames (or motion) as they become ready, latency",
                       description="Replay a speech file through a live session (Engine.live) as a microphone would "
                                   "deliver it, in real time or as fast as possible, with idle motion in its pauses; "
                                   "prints the look-ahead, first-frame time, latency and real-time factor.")
    _add_common(p, out_required=False)
    p.add_argument("--audio", required=True, help="speech recording to replay (wav, mp3, m4a, ogg, flac, webm…)")
    p.add_argument("--audio-backend", choices=tuple(AUDIO_BACKENDS), default=AudioJobOptions.backend,
                   help="speech-to-motion model (default ditto; it needs a push stream)")
    p.add_argument("--realtime", action="store_true",
                   help="push each chunk only when its audio would have been spoken (default: as fast as possible)")
    p.add_argument("--chunk-ms", type=int, default=200, metavar="MS",
                   help="milliseconds of audio per push, 1..10000 (default 200)")
    p.add_argument("--motion-only", action="store_true", help="generate motion only, render nothing (no --out)")
    p.add_argument("--save-motion", metavar="FILE.safetensors", help="also save the session's motion")
    _add_generation(p)
    add_option(p, AudioJobOptions, "still_head")
    add_option(p, LiveOptions, "window_overlap", metavar="N")
    group = p.add_argument_group("idle and listening motion between turns (README: Live avatar)")
    metavars = {"blink_interval": "S", "crossfade": "S", "hold": "S", "threshold": "RMS", "idle_seed": "SEED"}
    for name in option_fields(IdleOptions):
        add_option(group, IdleOptions, name, metavar=metavars.get(name, "X"))
    p.set_defaults(ditto_config=None, **{name: getattr(AudioJobOptions, name) for name in (
        "pose_from", "pose_from_landmarks", "pose_blend", "pose_style", "pose_style_landmarks", "pose_style_tempo",
        "pose_style_keep_mean")})


def _add_timeline(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keyframes", metavar="FILE.json",
                   help="edits along the timeline: keyframed controls and spans (JSON, see talkinghead/motion/keyframes.py; "
                        "version 2 adds spans, fade and neutralize), stacked on the job's controls at the times they "
                        "name; nothing changes outside them")


def _add_pose(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pose", help="photo + pose/expression controls -> image or video",
                       description="Turn the head, open/close eyes and mouth, smile, wink, look aside: "
                                   "one still image (--still) or a keyframed pose path (--keyframes) as a video.")
    _add_common(p, out_required=False)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--keyframes", metavar="FILE.json", help="pose path: keyframes of controls over time (needs --out)")
    what.add_argument("--still", metavar="OUT.png", help="write one image with the controls applied")


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="print what a file's C2PA manifest says (AI-generated? by what? valid?)",
                       description="Read and validate the C2PA manifest of a video or image (embedded, or the "
                                   "sidecar FILE-stem.c2pa of .mkv/.bmp). Exit status: 0 = a valid manifest, "
                                   "1 = no manifest or an invalid one, 2 = the file is missing or unreadable.")
    p.add_argument("file", metavar="FILE", help="video or image to check")
    p.add_argument("--json", action="store_true", help="print the whole manifest store as JSON")


def _add_batch(sub: argparse._SubParsersAction) -> None:
    from .batch_job import BatchOptions

    p = sub.add_parser("batch", help="many jobs from a JSONL file, in-process or on Ray (README: Batch jobs)",
                       description="Run the jobs of JOBS.jsonl (one JSON object per line: {\"job\": \"pose\", "
                                   "\"source\": \"a.png\", \"still\": \"a.png\", \"yaw\": 12}, the other keys being "
                                   "the job's long options). Relative outputs go under --out DIR, relative inputs are "
                                   "read from the JSONL file's folder; finished outputs are skipped on a re-run. "
                                   "Exit status: 0 every job done or skipped, 1 some line invalid or some job failed "
                                   "(DIR/batch_summary.json says which), 2 the batch itself could not run.")
    p.add_argument("jobs", metavar="JOBS.jsonl", help="the jobs, one JSON object per line")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the relative output paths and of batch_summary.json")
    add_option(p, BatchOptions, "ray", metavar="ADDRESS")
    add_option(p, BatchOptions, "workers", metavar="N")
    add_option(p, BatchOptions, "retries", metavar="K")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary table (the JSON is still written)")


def build_parser() -> argparse.ArgumentParser:
    """The ``talkinghead`` argument parser (one subcommand per job, plus ``verify``)."""
    # "python -m talkinghead" when run as a module, "talkinghead" for the installed command (pyproject scripts).
    prog = "python -m talkinghead" if Path(sys.argv[0]).name == "__main__.py" else "talkinghead"
    parser = argparse.ArgumentParser(prog=prog, description="One portrait photo in, a talking-head video out.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{video,audio,dub,pose,live,batch,eval,verify}")
    _add_video(sub)
    _add_audio(sub)
    _add_dub(sub)
    _add_pose(sub)
    _add_live(sub)
    _add_batch(sub)
    _add_verify(sub)
    add_eval_parser(sub)
    return parser


def _render_options(args: argparse.Namespace):
    from .engine import RenderOptions
    from .enhance.options import EnhanceOptions
    from .motion.action_units import au_controls
    from .motion.controls import CONTROL_SPECS, Controls
    from .motion.smoothing import SmoothingOptions

    given = {name: getattr(args, f"control_{name}") for name in CONTROL_SPECS if getattr(args, f"control_{name}") is not None}
    controls = Controls.from_mapping(given, "command-line controls") if given else None
    if args.au:
        controls = au_controls(dict(args.au), base=controls or Controls())
    expression = args.smooth if args.smooth_expression is None else args.smooth_expression
    enhance = EnhanceOptions(restorer=args.enhance, weight=args.enhance_weight, fidelity=args.fidelity,
                             upscale=args.upscale, tile=args.tile)
    return RenderOptions(smoothing=SmoothingOptions(pose=args.smooth, expression=expression), controls=controls,
                         paste_back=args.paste_back, batch_size=args.batch_size, max_frames=args.max_frames,
                         enhance=enhance, timeline=_timeline(args))


def _timeline(args: argparse.Namespace):
    """The video/audio job's ``--keyframes`` file, read and checked now (ControlError: one line); None without one.

    The pose job's ``--keyframes`` is its pose path (read when it runs), not a timeline.
    """
    from .motion.keyframes import read_keyframes

    if args.command == "pose" or not getattr(args, "keyframes", None):
        return None
    try:
        return read_keyframes(args.keyframes)
    except ControlError as error:  # name the flag: the message names the file
        raise ControlError(f"--keyframes: {error}") from None


def _engine(args: argparse.Namespace):
    """The job's engine; with ``args.engines`` (a dict the batch runner sets) one engine per weights/device
    setting is kept there and shared by the jobs that name the same setting (weights loaded once)."""
    from .engine import Engine

    revision = {"liveportrait": args.revision, "ditto": args.ditto_revision, "enhance": args.enhance_revision}
    settings = {"weights": args.weights, "device": args.device, "precision": args.precision, "compile": args.compile,
                "revision": {k: v for k, v in revision.items() if v is not None} or None}
    engines, key = getattr(args, "engines", None), repr(sorted(settings.items()))
    if engines is not None and key in engines:
        return engines[key]
    engine = Engine.from_pretrained(**settings, progress=not args.quiet)
    if engines is not None:
        engines[key] = engine
    return engine


def _prepare(engine, args: argparse.Namespace, settings=None):
    return engine.prepare_source(args.source, landmarks=args.source_landmarks, settings=settings)


def _engine_and_source(args: argparse.Namespace):
    engine = _engine(args)
    return engine, _prepare(engine, args)


_CREATED_FOLDERS: list[Path] = []
"""Folders this run created for its outputs (removed again, when still empty, if the job fails)."""


def _make_parent(path: str | None) -> None:
    """Create the folder of an output file given on the command line (e.g. ``--out outputs/a.mp4``).

    Raises:
        TalkingHeadError: the folder cannot be created (one line).
    """
    if not path:
        return
    folder = Path(path).expanduser().parent
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise TalkingHeadError(f"cannot create the output folder {folder} ({exc.strerror}); "
                                   "choose another output path") from None
        _CREATED_FOLDERS.append(folder)


def _remove_created_folders() -> None:
    while _CREATED_FOLDERS:
        try:
            _CREATED_FOLDERS.pop().rmdir()
        except OSError:
            pass


def _provenance(args: argparse.Namespace):
    """The job's C2PA options; the signing credential is checked here, before any work.

    Raises:
        ProvenanceError: bad key or certificate.
    """
    from .media.provenance import ProvenanceOptions, load_credential

    if not args.provenance:
        print("warning: --no-provenance: the outputs will not be marked as AI-generated (no C2PA manifest)",
              file=sys.stderr)
        return ProvenanceOptions(enabled=False)
    kind = {"video": "motion" if getattr(args, "motion", None) else "video",
            "audio": "audio", "dub": "dub", "live": "audio", "pose": "still" if getattr(args, "still", None) else "pose"}[args.command]
    details = {"enhance": args.enhance if args.enhance != "none" else None,
               "upscale": args.upscale if args.upscale != 1 else None}
    if args.command == "video":
        details.update(region=args.region, relative=args.relative)
    elif args.command in ("audio", "dub", "live"):
        details.update(emotion=args.emotion, seed=args.seed, still_head=args.still_head or None)
    options = ProvenanceOptions(key=args.c2pa_key, cert=args.c2pa_cert).for_job(kind, **details)
    load_credential(options)
    return options


def _write(engine, job, args: argparse.Namespace) -> None:
    _make_parent(args.out)
    engine.write_video(job, args.out, progress=not args.quiet, provenance=args.provenance_options)
    if not args.quiet:
        print(f"wrote {args.out} ({job.n_frames} frames, {job.fps:g} fps)", file=sys.stderr)


def _is_video(path: str) -> bool:
    """Whether ``path`` is a video (PyAV reads it as one, with more than one frame) rather than a photo."""
    from .errors import MediaError
    from .media.video import probe_video

    try:
        return probe_video(path).n_frames > 1
    except MediaError:
        return False


def _animation_options(args: argparse.Namespace):
    """The video job's AnimationOptions and DrivingCrop from its flags (every option field of both)."""
    from .drivers.video import DrivingCrop
    from .motion.animate import AnimationOptions
    from .options import option_fields

    def build(cls):
        return cls(**{name: getattr(args, name) for name in option_fields(cls) if hasattr(args, name)})

    return build(AnimationOptions), build(DrivingCrop)


def _run_video(args: argparse.Namespace) -> None:
    from .media.video import probe_video
    from .motion.io import MotionFile, load_motion, save_motion

    if args.mixed_drivers is not None:
        return _run_mixed(args)
    options, crop, render = args.animation_options, args.driving_crop, args.render_options
    source_video = _is_video(args.source)
    if source_video and args.motion:
        raise TalkingHeadError(f"--source {args.source} is a video: re-animating a video needs --driving CLIP, not --motion")
    if source_video and args.provenance:
        args.provenance_options = dataclasses.replace(args.provenance_options, job="source-video")
    engine = _engine(args)
    source = None if source_video else _prepare(engine, args)
    motion = None
    if args.motion:
        saved = load_motion(args.motion)
        job = engine.animate_relative_motion(source, saved.motion, saved.fps, options, render)
    else:
        if args.save_motion:
            # the whole clip's motion: --max-frames limits the rendering only
            motion = engine.extract_motion(args.driving, landmarks=args.driving_landmarks,
                                           crop=crop.crop_driving, box=crop.driving_box)
        driving = {"driving_landmarks": args.driving_landmarks, **dataclasses.asdict(crop)}
        if source is None:
            job = engine.animate_source_video(args.source, args.driving, options, render,
                                              source_landmarks=args.source_landmarks, **driving)
        else:
            job = engine.animate_video(source, args.driving, options, render, **driving)
    _write(engine, job, args)
    if motion is not None:  # after the video: a failed or stopped job writes nothing
        _make_parent(args.save_motion)
        save_motion(args.save_motion, MotionFile(motion.to("cpu"), probe_video(args.driving).fps))


def _audio_options(args: argparse.Namespace):
    from .jobs import AudioJobOptions

    return AudioJobOptions(
        backend=args.audio_backend, config=args.ditto_config, steps=args.steps, seed=args.seed, emotion=args.emotion, blinks=args.blinks,
        expression_scale=args.expression_scale, still_head=args.still_head, pose_from=args.pose_from,
        pose_from_landmarks=args.pose_from_landmarks, pose_blend=args.pose_blend, pose_style=args.pose_style,
        pose_style_landmarks=args.pose_style_landmarks, pose_style_tempo=args.pose_style_tempo,
        pose_style_keep_mean=args.pose_style_keep_mean,
    )


def _run_audio(args: argparse.Namespace) -> None:
    from .motion.io import MotionFile, load_motion, save_motion

    if args.mixed_drivers is not None:
        return _run_mixed(args)
    options, render = args.audio_options, args.render_options
    saved = load_motion(args.motion) if args.motion else None
    engine = _engine(args)
    # Ditto's size/crop rules when motion is generated here; a saved motion file needs no Ditto file.
    settings = None if saved else engine.audio_source_settings(options)
    source = _prepare(engine, args, settings)
    job = engine.animate_audio(source, args.audio, options, render, motion=saved.motion if saved else None,
                               fps=saved.fps if saved else None, progress=not args.quiet)
    _write(engine, job, args)
    if args.save_motion:  # after the video: a failed or stopped job writes nothing
        _make_parent(args.save_motion)
        save_motion(args.save_motion, MotionFile(job.motion.to("cpu"), job.fps, source=source.info.to("cpu")))


def _mixed_drivers(args: argparse.Namespace):
    """The job's :class:`~talkinghead.mixed_job.MixedDrivers` when regions are mixed, else None (today's job).

    Checked here, before any work: a region naming a driver whose input is
    missing, an input no region uses, options the mixed job does not take.
    Raises ControlError (one line).
    """
    from .mixed_job import MixedDrivers, resolve_regions
    from .motion.regions import RegionSources
    from .options import option_fields

    regions = RegionSources(**{name: getattr(args, name) for name in option_fields(RegionSources)})
    video = args.command == "video"
    extra = (args.audio is not None) if video else (args.driving is not None)
    if video and not (args.driving or args.motion):
        raise ControlError("give the driving motion: --driving CLIP or --motion FILE")
    if regions.is_default and not extra and not (video and args.driving and args.motion):
        return None
    if video and (args.region != "all" or args.animation_options.retargeting or args.driving_multiplier != 1.0):
        raise ControlError("--region, --eye/--lip-retargeting and --driving-multiplier do not apply to a job mixed by "
                           "face region (--head/--eyes/--brows/--mouth/--rest)")
    own = ("video" if args.driving else "motion") if video else ("motion" if args.motion else "audio")
    drivers = MixedDrivers(driving=args.driving, driving_landmarks=args.driving_landmarks,
                           crop=args.driving_crop if video else MixedDrivers().crop,
                           video_relative=args.relative if video else True, audio=args.audio,
                           audio_options=_video_audio_options(args) if video else args.audio_options,
                           motion=args.motion, default=own, stitching=None if not video or args.stitching else False)
    args.region_sources = resolve_regions(regions, drivers)
    if video and args.audio and "audio" not in args.region_sources.drivers():
        raise ControlError("--audio is given but no region uses it: choose it for a region, e.g. --mouth audio")
    if _is_video(args.source):
        raise ControlError(f"--source {args.source} is a video: mixing drivers by face region needs a photo")
    return drivers


def _video_audio_options(args: argparse.Namespace):
    """The video job's ``--audio`` generation settings (``--steps``, ``--seed``; the rest Ditto's defaults)."""
    from .jobs import AudioJobOptions

    return AudioJobOptions(steps=args.steps, seed=args.seed)


def _run_mixed(args: argparse.Namespace) -> None:
    """A video or audio job whose face regions come from different drivers (:meth:`Engine.animate_mixed`)."""
    from .motion.io import MotionFile, save_motion

    drivers, regions = args.mixed_drivers, args.region_sources
    engine = _engine(args)
    speech = "audio" in regions.drivers()  # the audio job's size and crop rules when speech drives a region
    source = _prepare(engine, args, engine.audio_source_settings(drivers.audio_options) if speech else None)
    job = engine.animate_mixed(source, drivers, regions, args.render_options, progress=not args.quiet)
    _write(engine, job, args)
    if args.save_motion:  # after the video: a failed or stopped job writes nothing
        _make_parent(args.save_motion)
        save_motion(args.save_motion, MotionFile(job.motion.to("cpu"), job.fps, source=source.info.to("cpu")))


def _run_dub(args: argparse.Namespace) -> None:
    engine = _engine(args)
    job = engine.dub(args.source, args.audio, args.audio_options, args.render_options, args.dub_options,
                     source_landmarks=args.source_landmarks, progress=not args.quiet)
    _write(engine, job, args)


def _run_pose(args: argparse.Namespace) -> None:
    from .media.image import save_image
    from .motion.controls import Controls
    from .motion.keyframes import read_keyframes

    render = args.render_options
    track = read_keyframes(args.keyframes) if args.keyframes else None
    engine, source = _engine_and_source(args)
    if track is None:
        _make_parent(args.still)
        save_image(args.still, engine.still_image(source, render.controls or Controls(), paste_back=render.paste_back,
                                                  enhance=render.enhance), provenance=args.provenance_options)
        if not args.quiet:
            print(f"wrote {args.still}", file=sys.stderr)
        return
    _write(engine, engine.animate_keyframes(source, track, render), args)


def _run_live(args: argparse.Namespace) -> None:
    """``live``: replay ``--audio`` through a live session; write the frames and/or motion; print the numbers."""
    from tqdm import tqdm

    from .jobs import VideoJob
    from .live_job import latency_summary, play_out, replay
    from .media.audio import load_audio
    from .media.video import AudioSource
    from .motion.frame import MotionSequence
    from .motion.io import MotionFile, save_motion

    engine = _engine(args)
    source = _prepare(engine, args, engine.audio_source_settings(args.audio_options))
    render = False if args.motion_only else args.render_options
    session = engine.live(source, args.live_options, args.audio_options, render)
    samples = load_audio(args.audio, session.sample_rate)
    chunk = max(1, args.chunk_ms * session.sample_rate // 1000)
    frames, motion = [], []
    limit = None if args.motion_only else args.max_frames
    with tqdm(total=-(-samples.size // chunk), unit="chunk", desc="live", disable=args.quiet) as bar:
        def images():
            for frame in replay(session, samples, chunk, args.realtime, limit, bar.update):
                motion.append(frame.motion)
                yield frame.image
                frame.image = None  # keep the timestamps only: memory does not grow with the images
                frames.append(frame)
        if args.out:
            n = min(math.ceil(samples.size * session.fps / session.sample_rate), limit or math.inf)
            _write(engine, VideoJob(frames=images(), fps=session.fps, n_frames=n,
                                    audio=AudioSource(args.audio, duration_s=n / session.fps)), args)
        else:
            for _ in images():
                pass
    print(_live_report(latency_summary(play_out(frames, session.fps), session), args.realtime))
    if args.save_motion:
        _make_parent(args.save_motion)
        save_motion(args.save_motion, MotionFile(MotionSequence.cat(motion).to("cpu"), session.fps,
                                                 source=source.info.to("cpu")))


def _live_report(summary: dict[str, float], realtime: bool) -> str:
    """The live harness's numbers, one line each."""
    s = summary
    timing = ("pushed in real time: latency = ready - frame end" if realtime else
              "pushed as fast as possible: ready times are compute only")
    return "\n".join([
        f"live: {s['frames']:.0f} frames from {s['audio_s']:.2f} s of audio ({timing})",
        f"look-ahead {s['lookahead_min_ms']:g}-{s['lookahead_max_ms']:g} ms of audio past a frame's end (online windows)",
        f"first frame ready {s['first_ready_s'] * 1000:.0f} ms after the start",
        f"latency mean {s['latency_mean_s'] * 1000:.0f} ms, max {s['latency_max_s'] * 1000:.0f} ms; "
        f"shown max {s['shown_latency_max_s'] * 1000:.0f} ms",
        f"real-time factor {s['rtf']:.3f} (busy time / audio duration; < 1 keeps up)"])


def _run_verify(args: argparse.Namespace) -> int:
    """``verify FILE``: print the manifest summary (or JSON); 0 valid, 1 none or invalid."""
    import json

    from .media.provenance import read_provenance

    report = read_provenance(args.file)
    if report is None:
        print(f"{args.file}: no C2PA manifest (nothing in the file declares whether it is AI-generated)")
        return 1
    if args.json:
        print(json.dumps(report.store, indent=2))
    else:
        print("\n".join(report.summary()))
    return 1 if report.validation_state == "Invalid" else 0


_INPUTS = {
    "video": ("source", "driving", "motion", "source_landmarks", "driving_landmarks", "audio", "keyframes"),
    "audio": ("source", "audio", "motion", "source_landmarks", "ditto_config", "pose_from", "pose_from_landmarks",
              "pose_style", "pose_style_landmarks", "driving", "driving_landmarks", "keyframes"),
    "pose": ("source", "keyframes", "source_landmarks"),
    "dub": ("source", "audio", "source_landmarks", "ditto_config", "keyframes"),
    "live": ("source", "audio", "source_landmarks"),
}
"""Input-file options of each job (an output may be none of them)."""


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _outputs(args: argparse.Namespace) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(option, path, allowed suffixes, kind) of every output file the job will write."""
    from .media.image import SAVE_SUFFIXES
    from .media.video import WRITE_SUFFIXES

    outputs = []
    if args.command == "pose" and args.still:
        outputs.append(("--still", args.still, SAVE_SUFFIXES, "image"))
    elif args.out:
        outputs.append(("--out", args.out, WRITE_SUFFIXES, "video"))
    if getattr(args, "save_motion", None) and not (args.command == "video" and args.motion):  # video: ignored then
        outputs.append(("--save-motion", args.save_motion, (".safetensors",), "motion file"))
    return outputs


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file: the same inode (hard or symbolic links) or the same resolved path."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
        return pa.resolve() == pb.resolve()
    except (OSError, RuntimeError):
        return False


def check_job(args: argparse.Namespace) -> None:
    """Check every option and output path of a parsed command line before any work.

    The job's option dataclasses are built here, once (their checks are the
    option checks), and kept on ``args`` for the job: ``render_options``
    (every job; on video and audio jobs with the ``--keyframes`` timeline,
    read here), ``audio_options`` (audio), ``animation_options`` and
    ``driving_crop`` (video).

    Raises:
        TalkingHeadError: an option out of range or a bad ``--keyframes``
            file (ControlError), ``--device
            cuda`` without a usable GPU or a ``--precision`` this device
            cannot run (DeviceError), an output with an unsupported
            suffix, an output that is one of the job's input files (it would
            be destroyed), or an output location that cannot be written
            (MediaError: read-only, permission, disk full, a file where a
            folder should be).
    """
    from .devices import resolve_device, resolve_precision
    from .media._files import check_output

    if args.command == "pose" and args.keyframes and not args.out:
        raise TalkingHeadError("--keyframes renders a video: give --out OUT.mp4 (or use --still OUT.png for one image)")
    args.render_options = _render_options(args)  # ranges of controls, smoothing, enhancement; video/audio --keyframes
    if args.command == "live":
        _check_live(args)
    if args.command in ("audio", "dub", "live"):
        from .drivers.audio.ditto.condition import emotion_sequence

        args.audio_options = _audio_options(args)  # ranges of --expression-scale, --pose-blend
        if args.emotion is not None:
            emotion_sequence(args.emotion)
    if args.command == "dub":
        from .dub_job import DubOptions

        args.dub_options = DubOptions(mouth_gain=args.mouth_gain, mouth_base=args.mouth_base)
    if args.command == "video":
        if not math.isfinite(args.driving_multiplier):
            raise ControlError(f"--driving-multiplier must be a finite number, got {args.driving_multiplier}")
        args.animation_options, args.driving_crop = _animation_options(args)
    if args.command in ("video", "audio"):
        args.mixed_drivers = _mixed_drivers(args)  # driver mixing by face region: None = the job as it is
    resolve_precision(args.precision, resolve_device(args.device))  # DeviceError: no GPU, or no bf16 on this CPU
    inputs = [(_flag(name), getattr(args, name)) for name in _INPUTS[args.command] if getattr(args, name, None)]
    for option, path, suffixes, kind in _outputs(args):
        for input_option, input_path in inputs:
            if _same_file(path, input_path):
                raise TalkingHeadError(
                    f"{option} {path} is the same file as {input_option} {input_path}: writing it would destroy "
                    "the input; choose another output path")
        check_output(path, suffixes, kind)


def _check_live(args: argparse.Namespace) -> None:
    """The live job's own checks: an output to write, a chunk size; builds ``args.live_options``."""
    from .live_job import LiveOptions
    from .motion.idle import IdleOptions
    from .options import option_fields

    if not args.motion_only and not args.out:
        raise TalkingHeadError("give --out OUT.mp4 for the rendered frames, or --motion-only (with --save-motion "
                               "M.safetensors to keep the motion)")
    if args.motion_only and args.out:
        raise TalkingHeadError("--motion-only renders nothing: leave out --out, or drop --motion-only")
    if not 1 <= args.chunk_ms <= 10000:
        raise ControlError(f"--chunk-ms must be between 1 and 10000, got {args.chunk_ms}")
    args.idle_options = IdleOptions(**{name: getattr(args, name) for name in option_fields(IdleOptions)})
    args.live_options = LiveOptions(idle=args.idle_options, window_overlap=args.window_overlap)


def check_inputs(args: argparse.Namespace) -> None:
    """Check that every input file of a checked job (:data:`_INPUTS`) exists, is a regular file and is not
    empty, so a mistyped path is found before the weights load (or download: ~520 MB on a first run).

    Raises:
        MediaError: the first input that is missing, not a regular file or empty; the message names its flag.
    """
    from .media._files import require_file

    for name in _INPUTS[args.command]:
        if getattr(args, name, None):
            require_file(Path(getattr(args, name)).expanduser(), _flag(name))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``with`` block cleans up as for Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


RUNS = {"video": _run_video, "audio": _run_audio, "dub": _run_dub, "pose": _run_pose, "live": _run_live}
"""The job of each rendering command (``batch`` runs these too, one per line)."""


def run_job(args: argparse.Namespace) -> None:
    """Check (:func:`check_job`, :func:`check_inputs`) and run one parsed rendering job, as ``main`` does.

    Folders created for the outputs are removed again (when still empty) if
    the job fails.  ``args.engines`` (optional dict) shares engines between
    jobs (see ``_engine``).

    Raises:
        TalkingHeadError: a user error (one line); OSError: a file-system failure;
        KeyboardInterrupt: Ctrl-C or SIGTERM.  No output file is left behind then.
    """
    ok = False
    try:
        check_job(args)
        check_inputs(args)
        args.provenance_options = _provenance(args)
        RUNS[args.command](args)
        ok = True
    finally:
        if not ok:
            _remove_created_folders()
        _CREATED_FOLDERS.clear()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, check it (:func:`check_job`) and run the job. Returns the process exit status."""
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        if args.command == "verify":
            return _run_verify(args)
        if args.command == "batch":
            from .batch_job import run_batch

            return run_batch(args)
        if args.command == "eval":
            run_eval(args)
            return 0
        run_job(args)
    except TalkingHeadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _Terminated:
        print("stopped by SIGTERM; no output was written", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130
    except OSError as e:  # a file-system failure no check foresaw: still one line
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return 0
