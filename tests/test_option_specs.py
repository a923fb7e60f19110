"""One home per option: the CLI flags and the app widgets come from the option dataclasses' fields."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from talkinghead import AnimationOptions, AudioJobOptions, EnhanceOptions, RenderOptions, SmoothingOptions
from talkinghead.cli import build_parser, main
from talkinghead.errors import ControlError
from talkinghead.options import OptionSpec, check_value, option, option_fields, spec_of, widget_spec

# (options class, field, job subcommand, CLI flag) of every option the CLI generates from a field.
CLI_OPTIONS = [
    (RenderOptions, "max_frames", "video", "--max-frames"),
    (RenderOptions, "batch_size", "video", "--batch-size"),
    (SmoothingOptions, "pose", "video", "--smooth"),
    (SmoothingOptions, "expression", "video", "--smooth-expression"),
    (EnhanceOptions, "restorer", "video", "--enhance"),
    (EnhanceOptions, "weight", "video", "--enhance-weight"),
    (EnhanceOptions, "fidelity", "video", "--fidelity"),
    (EnhanceOptions, "upscale", "video", "--upscale"),
    (EnhanceOptions, "tile", "video", "--tile"),
    (AnimationOptions, "driving_multiplier", "video", "--driving-multiplier"),
    (AnimationOptions, "region", "video", "--region"),
    (AudioJobOptions, "steps", "audio", "--steps"),
    (AudioJobOptions, "seed", "audio", "--seed"),
    (AudioJobOptions, "emotion", "audio", "--emotion"),
    (AudioJobOptions, "blinks", "audio", "--blinks"),
    (AudioJobOptions, "expression_scale", "audio", "--expression-scale"),
    (AudioJobOptions, "pose_blend", "audio", "--pose-blend"),
]
CLI_DEFAULT_DIFFERS = {"--smooth-expression": None}
"""Flags whose CLI default is not the field's (None = "same as --smooth")."""


def _action(command: str, flag: str) -> argparse.Action:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize(("options", "name", "command", "flag"), CLI_OPTIONS, ids=[row[3] for row in CLI_OPTIONS])
def test_cli_flag_has_the_fields_default_range_and_help(options, name, command, flag) -> None:
    spec, default = spec_of(options, name)
    action = _action(command, flag)
    assert action.default == CLI_DEFAULT_DIFFERS.get(flag, default)
    assert action.default == getattr(options(), name) or flag in CLI_DEFAULT_DIFFERS
    assert action.help.startswith(spec.help)
    if spec.range is not None:
        low, high = spec.range
        assert (f"{low:g}..{high:g}" if high is not None else f">= {low:g}") in action.help
    if spec.choices is not None and spec.check_choices:
        assert tuple(action.choices) == spec.choices
    if default is not None and flag not in CLI_DEFAULT_DIFFERS:
        assert f"default {default:g}" in action.help if isinstance(default, float) else f"default {default}" in action.help


def test_every_option_field_of_the_job_options_has_a_cli_flag_or_is_the_apps_only() -> None:
    """A new option field is seen here: it gets a flag (listed above) or is known to have none."""
    no_flag = {(AnimationOptions, "relative"), (AnimationOptions, "stitching"), (RenderOptions, "paste_back")}
    fields = {(cls, name) for cls in (RenderOptions, SmoothingOptions, EnhanceOptions, AnimationOptions,
                                      AudioJobOptions) for name in option_fields(cls)}
    assert fields == {(cls, name) for cls, name, _, _ in CLI_OPTIONS} | no_flag


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


def test_app_widgets_are_built_from_the_same_fields() -> None:
    """The app built in-process (no server): each option widget has its field's label, range and default."""
    pytest.importorskip("gradio")
    import app

    demo = app.build_app()
    by_label: dict[str, list] = {}
    for block in demo.blocks.values():
        if getattr(block, "label", None):
            by_label.setdefault(block.label, []).append(block)
    for options, name, _ in WIDGETS:
        spec = widget_spec(options, name)
        widgets = by_label[spec.label]
        for widget in widgets:
            shown = spec.minimum if spec.value is None else spec.value
            assert (widget.minimum, widget.maximum, widget.value) == (spec.minimum, spec.maximum, shown), spec.label
    for options, name in ((AudioJobOptions, "blinks"), (AnimationOptions, "region"), (EnhanceOptions, "restorer")):
        spec = widget_spec(options, name)
        (widget, *_) = by_label[spec.label]
        values = [value for _, value in widget.choices]
        assert [v for v in values if v != app.FROM_CONFIG] == list(spec.choices)
    paste_back = widget_spec(RenderOptions, "paste_back")
    assert [w.value for w in by_label[paste_back.label]] == [paste_back.value] * 3  # one per tab
    # the forms' defaults are the fields' (0 standing for None where the widget is a number)
    assert (app.AudioForm.pose_blend, app.AudioForm.expression_scale, app.AudioForm.steps,
            app.VideoForm.multiplier, app.VideoForm.region) == (1.0, 1.0, 0, 1.0, "all")
    assert app.AudioForm().options() == AudioJobOptions(seed=0)


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
