"""One home per option: dataclass fields that carry their help, range and default.

An options dataclass (e.g. :class:`~talkinghead.engine.AudioJobOptions`)
declares each user-facing field with :func:`option`; the field's metadata then
holds an :class:`OptionSpec`.  From that one definition:

* the dataclass checks the value (:func:`check_options`, called from its
  ``__post_init__``): a number outside ``range`` or a value not in
  ``choices`` raises :class:`~talkinghead.errors.ControlError`;
* the CLI generates its flag (:func:`add_option`): type, default, and a help
  text naming the range and the default;
* the app generates its widget (:func:`widget_spec`: label, minimum, maximum,
  step, value, choices; ``app.py`` turns it into a Gradio component, so this
  module imports no UI library).

This is what :data:`talkinghead.motion.controls.CONTROL_SPECS` does for the
pose and expression controls, for the job options.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import ControlError

_KEY = "talkinghead.option"


@dataclass(frozen=True)
class OptionSpec:
    """What the CLI, the app and the check know about one option field.

    Attributes:
        help: one-line meaning (CLI help; the widget's ``info``).
        what: the option's name in error messages (e.g. "pose blend").
        range: (low, high) accepted numbers, inclusive; None for either end =
            unbounded; None = any value (no numeric check).
        choices: accepted values (None = any); also the widget's choices.
        check_choices: whether ``choices`` are checked (False: they only
            list the common values, e.g. emotion labels that also mix).
        flag: CLI flag (e.g. "--steps"); None = ``--`` + the field name with
            dashes.  A boolean field's flag sets it to True (``store_true``).
        off_flag: a boolean field's flag that sets it to False (e.g.
            "--no-stitching"); a field with an ``off_flag`` has a True flag
            only where ``flag`` names one.
        off_help: the help of ``off_flag`` (what False means).
        label: the widget's label (default: ``what``, capitalised).
        step: slider step (default 0.05 for floats, 1 for ints).
        widget_range: the slider's (minimum, maximum) where it differs from
            ``range`` (e.g. an unbounded range, or 0 meaning "default").
        type: the value's type for the CLI (float, int, str); default: that of
            the field's default, else str.
    """

    help: str
    what: str
    range: tuple[float | None, float | None] | None = None
    choices: tuple[Any, ...] | None = None
    check_choices: bool = True
    flag: str | None = None
    off_flag: str | None = None
    off_help: str | None = None
    label: str | None = None
    step: float | None = None
    widget_range: tuple[float, float] | None = None
    type: Callable[[str], Any] | None = None


def option(default: Any, *, help: str, what: str, range: tuple[float | None, float | None] | None = None,
           choices: Sequence[Any] | None = None, **more: Any) -> Any:
    """A dataclass field with ``default`` whose metadata holds its :class:`OptionSpec`.

    Args:
        default: the one default of the option (immutable).
        help, what, range, choices, **more: the :class:`OptionSpec` fields.

    Returns:
        a :func:`dataclasses.field` to assign in a dataclass body.
    """
    spec = OptionSpec(help=help, what=what, range=range, choices=None if choices is None else tuple(choices), **more)
    return dataclasses.field(default=default, metadata={_KEY: spec})


def option_like(cls: type, name: str, **changes: Any) -> Any:
    """A dataclass field with the spec and default of option field ``name`` of ``cls``, ``changes`` on top.

    For an option that two dataclasses hold (e.g. the audio job's ``seed``,
    handed on to the audio driver's), so that its default and help are
    written once.

    Args:
        cls, name: the dataclass and the field whose option is repeated.
        **changes: ``default`` and/or :class:`OptionSpec` fields that differ.

    Raises:
        KeyError: ``name`` is not an option field of ``cls``.
    """
    spec, default = spec_of(cls, name)
    default = changes.pop("default", default)
    return dataclasses.field(default=default, metadata={_KEY: dataclasses.replace(spec, **changes)})


def option_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of dataclass ``cls`` declared with :func:`option`, by name (declaration order)."""
    return {f.name: f for f in dataclasses.fields(cls) if _KEY in f.metadata}


def spec_of(cls: type, name: str) -> tuple[OptionSpec, Any]:
    """(spec, default) of option field ``name`` of dataclass ``cls``.

    Raises:
        KeyError: ``name`` is not an option field of ``cls``.
    """
    found = option_fields(cls)[name]
    return found.metadata[_KEY], found.default


def _range_text(spec: OptionSpec) -> str:
    low, high = spec.range if spec.range is not None else (None, None)
    if low is not None and high is not None:
        return f"{low:g}..{high:g}"
    if low is not None:
        return f">= {low:g}"
    return f"<= {high:g}" if high is not None else ""


def check_value(spec: OptionSpec, value: Any) -> None:
    """Raise ControlError unless ``value`` fits the spec's range and choices (None always fits).

    Messages: "<what> must be between <low> and <high>, got <value>" (NaN and
    non-numbers included), "<what> must be at least <low>, got …", "<what>
    must be one of …, got …".
    """
    if value is None:
        return
    if spec.choices is not None and spec.check_choices and value not in spec.choices:
        raise ControlError(f"{spec.what} must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
    if spec.range is None:
        return
    low, high = spec.range
    number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if number and (low is None or value >= low) and (high is None or value <= high):
        return
    if low is not None and high is not None:
        raise ControlError(f"{spec.what} must be between {low:g} and {high:g}, got {value}")
    bound = f"at least {low:g}" if low is not None else f"at most {high:g}"
    raise ControlError(f"{spec.what} must be {bound}, got {value}")


def check_options(options: Any) -> None:
    """Check every :func:`option` field of a dataclass instance (call it from ``__post_init__``).

    Raises:
        ControlError: the first field out of its range or choices.
    """
    for name, found in option_fields(type(options)).items():
        check_value(found.metadata[_KEY], getattr(options, name))


def option_help(spec: OptionSpec, default: Any) -> str:
    """The CLI help of an option: its help, range and default, e.g. "pose blend … (0..1; default 1)"."""
    parts = [p for p in (_range_text(spec), f"default {default:g}" if isinstance(default, float) else
                         f"default {default}" if default is not None else "") if p]
    return f"{spec.help} ({'; '.join(parts)})" if parts else spec.help


def add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, name: str, *,
               flag: str | None = None, dest: str | None = None, default: Any = dataclasses.MISSING,
               help: str | None = None, metavar: str | None = None) -> argparse.Action:
    """Add the CLI flag of option field ``name`` of ``cls``: type, default, choices and help from its spec.

    A boolean field gets a switch: ``store_true`` under its flag and/or
    ``store_false`` under its spec's ``off_flag`` (help: ``off_help``),
    mutually exclusive when it has both (e.g. ``--relative``/``--absolute``).

    The value is checked by the dataclass when the job's options are built
    (the CLI turns its ControlError into one line and exit 2), so the check is
    written once.

    Args:
        parser: a parser or argument group.
        cls, name: the options dataclass and the field.
        flag: the flag where the CLI names it differently (default: the spec's, else ``--name``).
        dest: argparse destination (default: from the flag).
        default: the CLI's default where it differs from the field's (e.g.
            None = "same as another flag"); ``help`` then says so.
        help: replaces the spec's help text (range and default are still appended).
        metavar: argparse metavar.

    Returns:
        the argparse action (a switch with two flags: the True one).
    """
    spec, field_default = spec_of(cls, name)
    cli_default = field_default if default is dataclasses.MISSING else default
    if isinstance(field_default, bool):
        return _add_switch(parser, spec, name, cli_default, flag, dest, help)
    kind = spec.type or (type(field_default) if field_default is not None and not isinstance(field_default, bool)
                         else str)
    extra: dict[str, Any] = {}
    if spec.choices is not None and spec.check_choices:
        extra["choices"] = spec.choices
    if metavar is not None:
        extra["metavar"] = metavar
    if dest is not None:
        extra["dest"] = dest
    text = option_help(dataclasses.replace(spec, help=help or spec.help), cli_default)
    return parser.add_argument(flag or spec.flag or f"--{name.replace('_', '-')}", type=kind, default=cli_default,
                               help=text, **extra)


def _add_switch(parser: argparse.ArgumentParser | argparse._ArgumentGroup, spec: OptionSpec, name: str,
                default: bool, flag: str | None, dest: str | None, help: str | None) -> argparse.Action:
    """The flag(s) of a boolean option: ``store_true`` (its flag) and/or ``store_false`` (its ``off_flag``).

    With both, they are mutually exclusive; the flag that keeps the default
    says "(default)".
    """
    dest = dest or name
    on_flag = flag or spec.flag or (None if spec.off_flag else f"--{name.replace('_', '-')}")
    if on_flag is not None and spec.off_flag is not None:
        parser = parser.add_mutually_exclusive_group()
    actions = []
    if on_flag is not None:
        text = help or spec.help
        actions.append(parser.add_argument(on_flag, dest=dest, action="store_true", default=default,
                                           help=f"{text} (default)" if default else text))
    if spec.off_flag is not None:
        text = spec.off_help or f"not: {spec.help}"
        actions.append(parser.add_argument(spec.off_flag, dest=dest, action="store_false", default=default,
                                           help=text if default else f"{text} (default)"))
    return actions[0]


@dataclass(frozen=True)
class WidgetSpec:
    """What a UI needs to build the input of one option.

    Attributes:
        label: shown label.
        value: initial value (the field's default; a UI that shows None as a
            number uses ``minimum``).
        minimum, maximum: slider bounds (None: no numeric range).
        step: slider step.
        choices: values of a dropdown/radio (None: not a choice).
        info: the option's help text.
    """

    label: str
    value: Any
    minimum: float | None
    maximum: float | None
    step: float | None
    choices: tuple[Any, ...] | None
    info: str


def widget_spec(cls: type, name: str) -> WidgetSpec:
    """The UI input of option field ``name`` of dataclass ``cls``, from its spec.

    Raises:
        KeyError: ``name`` is not an option field of ``cls``.
    """
    spec, default = spec_of(cls, name)
    low, high = spec.widget_range or spec.range or (None, None)
    integer = spec.type is int or (isinstance(default, int) and not isinstance(default, bool))
    step = spec.step if spec.step is not None else (None if low is None else 1 if integer else 0.05)
    label = spec.label or spec.what[:1].upper() + spec.what[1:]
    return WidgetSpec(label=label, value=default, minimum=low, maximum=high, step=step, choices=spec.choices,
                      info=spec.help)
