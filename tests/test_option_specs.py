"""One home per option: the CLI flags and the app widgets come from the option dataclasses' fields."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from talkinghead import (AnimationOptions, AudioJobOptions, DrivingCrop, EngineOptions, EnhanceOptions, RenderOptions,
                         SmoothingOptions)
from talkinghead.cli import build_parser, check_job, main
from talkinghead.dub_job import DubOptions
from talkinghead.errors import ControlError
from talkinghead.motion.idle import IdleOptions
from talkinghead.motion.regions import RegionSources
from talkinghead.options import OptionSpec, check_value, option, option_fields, spec_of, widget_spec

OPTION_CLASSES = (EngineOptions, RenderOptions, SmoothingOptions, EnhanceOptions, AnimationOptions, DrivingCrop,
                  AudioJobOptions, RegionSources, DubOptions, IdleOptions)
"""Every options dataclass a job's flags and the app's widgets are generated from."""
COMMON = (EngineOptions, RenderOptions, SmoothingOptions, EnhanceOptions)
JOBS = {"video": (*COMMON, AnimationOptions, DrivingCrop, RegionSources), "audio": (*COMMON, AudioJobOptions, RegionSources),
        "pose": COMMON, "dub": (*COMMON, AudioJobOptions, DubOptions), "live": (*COMMON, AudioJobOptions, IdleOptions)}
"""The options dataclasses whose fields each job's flags set (the pose job's --still OUT.png is no field)."""
NO_FLAG = {(AnimationOptions, "normalize_lip")}
"""Option fields with no CLI flag (LivePortrait's lip normalisation: API only)."""
CLI_DEFAULT_DIFFERS = {"--smooth-expression": None}
"""Flags whose CLI default is not the field's (None = "same as --smooth")."""


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _fields_by_dest(classes: tuple[type, ...]) -> dict[str, tuple[type, str]]:
    """CLI destination → (options class, field): the field's name and the destinations of its spec's flags."""
    found: dict[str, tuple[type, str]] = {}
    for cls in classes:
        for name in option_fields(cls):
            spec, _ = spec_of(cls, name)
            for dest in {name} | ({_dest(spec.flag)} if spec.flag else set()):
                assert found.setdefault(dest, (cls, name)) == (cls, name), f"{dest} names two option fields"
    return found


def _job_actions(command: str) -> list[argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if a.option_strings]


def _action(command: str, flag: str) -> argparse.Action:
    return next(a for a in _job_actions(command) if flag in a.option_strings)


def _checked(help_text: str, spec: OptionSpec, default, action: argparse.Action, flag: str) -> None:
    if isinstance(action, argparse._StoreFalseAction):  # a switch's False flag (--no-stitching, --absolute…)
        assert spec.off_help and help_text.startswith(spec.off_help), flag
        return
    assert help_text.startswith(spec.help), flag
    if isinstance(default, bool):
        assert isinstance(action, argparse._StoreTrueAction), flag
        return
    if spec.range is not None:
        low, high = spec.range
        assert (f"{low:g}..{high:g}" if high is not None else f">= {low:g}") in help_text, flag
    if spec.choices is not None and spec.check_choices:
        assert tuple(action.choices) == spec.choices, flag
    if default is not None and flag not in CLI_DEFAULT_DIFFERS:
        assert (f"default {default:g}" if isinstance(default, float) else f"default {default}") in help_text, flag


def test_every_flag_whose_dest_is_an_option_field_has_that_fields_default_and_help() -> None:
    """Catches a flag written by hand beside its field (e.g. ``--device ... default="auto"``) whose default or
    help drifts from the field's, and an option field that lost its flag."""
    seen = set()
    for command, classes in JOBS.items():
        fields = _fields_by_dest(classes)
        for action in _job_actions(command):
            if action.dest not in fields:
                continue
            cls, name = fields[action.dest]
            spec, default = spec_of(cls, name)
            flag = action.option_strings[0]
            seen.add((cls, name))
            assert action.default == CLI_DEFAULT_DIFFERS.get(flag, default), flag
            assert action.default == getattr(cls(), name) or flag in CLI_DEFAULT_DIFFERS, flag
            _checked(action.help, spec, default, action, flag)
    every = {(cls, name) for cls in OPTION_CLASSES for name in option_fields(cls)}
    assert seen == every - NO_FLAG


SWITCHES = [  # (command, flags, options class, the field values they give)
    ("video", ["--absolute"], AnimationOptions, {"relative": False}),
    ("video", ["--relative"], AnimationOptions, {"relative": True}),
    ("video", ["--no-stitching"], AnimationOptions, {"stitching": False}),
    ("video", ["--pose-friendly"], AnimationOptions, {"expression_friendly": False}),
    ("video", ["--eye-retargeting", "--lip-retargeting"], AnimationOptions,
     {"eye_retargeting": True, "lip_retargeting": True}),
    ("video", ["--region", "lip", "--driving-multiplier", "1.5"], AnimationOptions,
     {"region": "lip", "driving_multiplier": 1.5}),
    ("video", ["--crop-driving", "on", "--driving-box", "track"], DrivingCrop,
     {"crop_driving": "on", "driving_box": "track"}),
    ("audio", ["--still-head"], AudioJobOptions, {"still_head": True}),
    ("audio", ["--steps", "10", "--seed", "3", "--pose-blend", "0.5"], AudioJobOptions,
     {"steps": 10, "seed": 3, "pose_blend": 0.5}),
    ("pose", ["--no-paste-back", "--batch-size", "2"], RenderOptions, {"paste_back": False, "batch_size": 2}),
    ("dub", ["--mouth-gain", "1.5", "--mouth-base", "frame"], DubOptions, {"mouth_gain": 1.5, "mouth_base": "frame"}),
    ("dub", ["--steps", "2", "--emotion", "happy"], AudioJobOptions, {"steps": 2, "emotion": "happy"}),
    ("live", ["--no-idle", "--listening", "0.5", "--crossfade", "0.2"], IdleOptions,
     {"idle": False, "listening": 0.5, "crossfade": 0.2}),
    ("live", ["--steps", "2", "--still-head"], AudioJobOptions, {"steps": 2, "still_head": True}),
]
JOB_OPTIONS = {AnimationOptions: "animation_options", DrivingCrop: "driving_crop", AudioJobOptions: "audio_options",
               RenderOptions: "render_options", DubOptions: "dub_options", IdleOptions: "idle_options"}
"""Where :func:`check_job` leaves each options dataclass it built on the parsed arguments."""


def _job_args(command: str, tmp_path, *flags: str) -> argparse.Namespace:
    inputs = {"video": ["--driving", "d.mp4"], "audio": ["--audio", "a.wav"], "pose": ["--keyframes", "k.json"],
              "dub": ["--audio", "a.wav"], "live": ["--audio", "a.wav"]}
    args = build_parser().parse_args([command, "--source", "p.png", "--out", str(tmp_path / "o.mp4"),
                                      *inputs[command], *flags])
    check_job(args)  # checks and builds the job's options once (the inputs need not exist)
    return args


@pytest.mark.parametrize("command", JOBS)
def test_a_command_line_without_option_flags_gives_the_dataclass_defaults(command, tmp_path) -> None:
    """Catches a flag whose default (or a store_true/store_false direction) differs from its field's."""
    args = _job_args(command, tmp_path)
    assert args.render_options == RenderOptions()
    assert EngineOptions(device=args.device, precision=args.precision, compile=args.compile) == EngineOptions()
    if command == "video":
        assert (args.animation_options, args.driving_crop) == (AnimationOptions(), DrivingCrop())
    if command in ("audio", "dub", "live"):
        assert args.audio_options == AudioJobOptions()
    if command == "dub":
        assert args.dub_options == DubOptions()
    if command == "live":
        assert args.idle_options == IdleOptions()


@pytest.mark.parametrize(("command", "flags", "options", "values"), SWITCHES, ids=[" ".join(r[1]) for r in SWITCHES])
def test_each_flag_reaches_its_field_in_the_options_the_job_is_given(command, flags, options, values, tmp_path) -> None:
    """Catches a switch wired to the wrong dest or direction (e.g. --pose-friendly setting expression_friendly)."""
    args = _job_args(command, tmp_path, *flags)
    assert getattr(args, JOB_OPTIONS[options]) == options(**values)


def test_relative_and_absolute_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["video", "--source", "p", "--out", "o.mp4", "--driving", "d", "--relative",
                                   "--absolute"])
    assert stopped.value.code == 2


def test_the_audio_jobs_steps_and_seed_are_the_audio_drivers_options() -> None:
    """The audio job repeats the driver's seed (default 0) and steps (its help) from one definition."""
    from talkinghead.drivers.audio.ditto.driver import AudioDriverOptions

    assert spec_of(AudioJobOptions, "seed") == spec_of(AudioDriverOptions, "seed")
    assert AudioJobOptions().seed == AudioDriverOptions().seed
    assert spec_of(AudioJobOptions, "steps")[0].help.startswith(spec_of(AudioDriverOptions, "steps")[0].help)
    assert spec_of(AudioJobOptions, "steps")[0].range == spec_of(AudioDriverOptions, "steps")[0].range


# (options class, field, the widget's (minimum, maximum, value)) as the app shows them.
WIDGETS = [
    (AudioJobOptions, "pose_blend", (0.0, 1.0, 1.0)),
    (AudioJobOptions, "expression_scale", (0.0, 3.0, 1.0)),
    (AudioJobOptions, "steps", (0, 50, None)),  # 0 = the configuration's (the field's None)
    (SmoothingOptions, "pose", (0.0, 1.0, 0.0)),
    (EnhanceOptions, "weight", (0.0, 1.0, 1.0)),
    (AnimationOptions, "driving_multiplier", (0.0, 2.0, 1.0)),
]


@pytest.mark.parametrize(("options", "name", "expected"), WIDGETS, ids=[row[1] for row in WIDGETS])
def test_widget_spec_has_the_fields_range_and_default(options, name, expected) -> None:
    spec = widget_spec(options, name)
    assert (spec.minimum, spec.maximum, spec.value) == expected
    assert spec.value == getattr(options(), name)
    low, high = spec_of(options, name)[0].range or (None, None)
    assert low is None or spec.minimum <= low
    assert high is None or spec.maximum == high


def _shown_default(app, options: type, name: str, widget):
    """The value an option field's widget starts at when it shows the field's default."""
    spec = widget_spec(options, name)
    if (options, name) == (EnhanceOptions, "upscale"):
        return f"{spec.value}x"  # the radio's labels: "1x", "2x"
    if spec.value is None:
        return app.FROM_CONFIG if getattr(widget, "choices", None) else spec.minimum
    return spec.value


def test_app_widgets_are_built_from_the_same_fields() -> None:
    """The app built in-process (no server): every widget labelled as an option field starts at the field's
    default and has its range and choices (catches a widget whose value or range is written in app.py)."""
    pytest.importorskip("gradio")
    import app

    demo = app.build_app()
    by_label: dict[str, list] = {}
    for block in demo.blocks.values():
        if getattr(block, "label", None):
            by_label.setdefault(block.label, []).append(block)
    shown = set()
    for options in OPTION_CLASSES:
        for name in option_fields(options):
            spec = widget_spec(options, name)
            for widget in by_label.get(spec.label, []):
                shown.add(name)
                assert widget.value == _shown_default(app, options, name, widget), spec.label
                if isinstance(getattr(widget, "maximum", None), (int, float)) and spec.maximum is not None:
                    assert (widget.minimum, widget.maximum) == (spec.minimum, spec.maximum), spec.label
    assert shown >= {"pose_blend", "expression_scale", "steps", "seed", "blinks", "emotion", "pose", "paste_back",
                     "max_frames", "restorer", "weight", "upscale", "relative", "stitching", "driving_multiplier",
                     "region"}
    for options, name in ((AudioJobOptions, "blinks"), (AnimationOptions, "region"), (EnhanceOptions, "restorer")):
        spec = widget_spec(options, name)
        (widget, *_) = by_label[spec.label]
        values = [value for _, value in widget.choices]
        assert [v for v in values if v != app.FROM_CONFIG] == list(spec.choices)
    paste_back = widget_spec(RenderOptions, "paste_back")
    assert len(by_label[paste_back.label]) == 3  # one per tab


def test_the_apps_forms_default_to_the_dataclass_defaults() -> None:
    """Catches a form default written in app.py that drifts from its field (the API's defaults are the forms')."""
    pytest.importorskip("gradio")
    import app

    assert app.AudioForm().options() == AudioJobOptions()
    assert app.AudioForm().render() == RenderOptions()
    assert app.VideoForm().options() == AnimationOptions()
    assert app.VideoForm().render() == RenderOptions()


RANGE_VIOLATIONS = [
    (AudioJobOptions, {"pose_blend": 1.5}, "--pose-blend 1.5", "pose blend must be between 0 and 1"),
    (AudioJobOptions, {"expression_scale": -1.0}, "--expression-scale -1", "expression scale must be between 0 and 3"),
    (AudioJobOptions, {"steps": 0}, "--steps 0", "diffusion steps must be at least 1"),
    (AudioJobOptions, {"blinks": "often"}, "--blinks often", None),  # argparse's choices
    (RenderOptions, {"max_frames": 0}, "--max-frames 0", "max frames must be at least 1"),
    (RenderOptions, {"batch_size": 0}, "--batch-size 0", "batch size must be at least 1"),
    (SmoothingOptions, {"pose": 2.0}, "--smooth 2", "pose smoothing strength must be between 0 and 1"),
    (EnhanceOptions, {"fidelity": -0.5}, "--fidelity -0.5", "enhance fidelity must be between 0 and 1"),
]


@pytest.mark.parametrize(("options", "values", "flag", "message"), RANGE_VIOLATIONS,
                         ids=[row[2].split()[0] for row in RANGE_VIOLATIONS])
def test_a_range_violation_is_the_same_control_error_from_the_dataclass_and_exit_2_from_the_cli(
        options, values, flag, message, tmp_path, capsys) -> None:
    with pytest.raises(ControlError, match=message or "blinks must be one of model, template, off"):
        options(**values)
    # the CLI fails in check_job, before loading anything (the inputs need not exist)
    argv = ["audio", "--source", "p.png", "--audio", "a.wav", "--out", str(tmp_path / "o.mp4"), *flag.split()]
    if message is None:
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
    else:
        assert main(argv) == 2
        assert f"error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_check_value_rejects_nan_and_non_numbers_and_accepts_none() -> None:
    spec = OptionSpec(help="h", what="gain", range=(0.0, 1.0))
    for bad in (float("nan"), "0.5", True, 1.5):
        with pytest.raises(ControlError, match="gain must be between 0 and 1"):
            check_value(spec, bad)
    check_value(spec, None)
    check_value(spec, 1)


def test_option_is_a_dataclass_field_with_its_default() -> None:
    @dataclasses.dataclass(frozen=True)
    class Example:
        gain: float = option(0.5, what="gain", range=(0.0, 1.0), help="how much")

    assert Example().gain == 0.5
    assert spec_of(Example, "gain")[0].help == "how much"
    assert widget_spec(Example, "gain").label == "Gain"
