"""Motion curves: per-frame pose, eye/mouth opening and AU intensities of a motion sequence.

Curves (each a (B,) float32 numpy array, one value per frame):

* ``pitch``, ``yaw``, ``roll`` — the frames' head angles, degrees.
* ``eyes_open`` — 1 − (amount of the ``blink`` expression direction in
  exp − exp_reference): 1 = eyes as in the reference, 0 = closed as far as
  ``blink = 1`` closes them, > 1 wider.  A proxy read from the eye rows
  11/13/15/16 of ``exp``, not a measured eye-opening ratio.
* ``mouth_open`` — amount of the ``mouth_open`` expression direction
  (lip rows 17/19) in exp − exp_reference: 0 = as in the reference, 1 = as
  ``mouth_open = 1``; negative = pressed more closed.  Also a proxy.
* one curve per action unit (``AU1`` …), intensity in [0, 1] from
  :func:`~.action_units.estimate_intensities`.

The amounts are least-squares projections (:func:`~.action_units.project_expression`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from .action_units import estimate_intensities, project_expression
from .controls import expression_direction
from .frame import MotionSequence

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POSE_CURVES = ("pitch", "yaw", "roll")
OPENING_CURVES = ("eyes_open", "mouth_open")


def motion_curves(motion: MotionSequence, reference: MotionSequence | None = None) -> dict[str, np.ndarray]:
    """Per-frame curves of a motion sequence (see the module docstring).

    Args:
        motion: (B) motion frames.
        reference: (1) neutral frame the expression curves are relative to,
            usually the source's motion; default: the first frame of ``motion``.

    Returns:
        Curve name → (B,) float32 array: pitch/yaw/roll (degrees), eyes_open,
        mouth_open (unitless proxies), then the AU intensities in [0, 1].
    """
    reference = motion[0] if reference is None else reference
    delta = motion.exp - reference.exp
    curves = {name: getattr(motion, name)[:, 0] for name in POSE_CURVES}
    curves["eyes_open"] = 1.0 - project_expression(delta, expression_direction("blink", like=delta))
    curves["mouth_open"] = project_expression(delta, expression_direction("mouth_open", like=delta))
    curves.update(estimate_intensities(motion, reference))
    return {name: curve.detach().float().cpu().numpy() for name, curve in curves.items()}


def plot_curves(curves: Mapping[str, np.ndarray], fps: float | None = None,
                spans: Sequence[tuple[float, float]] = ()) -> "Figure":
    """Figure of motion curves: pose angles, eye/mouth opening, AU intensities (three panels).

    Rendered with matplotlib's Agg canvas, without pyplot (no global state,
    no display needed).  Requires matplotlib.

    Args:
        curves: from :func:`motion_curves` (any subset of its names).
        fps: frame rate, Hz; the x axis is in seconds if given, else frames.
        spans: (start, end) times in seconds to shade on every panel, e.g. the
            edited stretches of a timeline
            (:func:`talkinghead.motion.timeline.edited_intervals`); they need ``fps``.

    Raises:
        ValueError: ``spans`` given without ``fps``.

    Returns:
        A ``matplotlib.figure.Figure`` (save it with ``fig.savefig(path)``).
    """
    if spans and not fps:
        raise ValueError("edited spans are in seconds: give the curves' fps too")
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 1, sharex=True)
    length = len(next(iter(curves.values()))) if curves else 0
    x = np.arange(length) / fps if fps else np.arange(length)
    groups = (
        (POSE_CURVES, "head pose (degrees)"),
        (OPENING_CURVES, "opening (1 / 0 = reference)"),
        (tuple(name for name in curves if name.startswith("AU")), "AU intensity"),
    )
    axes[2].set_prop_cycle(color=colormaps["tab20"].colors)
    for ax, (names, label) in zip(axes, groups):
        for name in names:
            if name in curves:
                ax.plot(x, curves[name], label=name)
        ax.set_ylabel(label)
        for start, end in spans:
            ax.axvspan(start, end, color="tab:orange", alpha=0.15, lw=0, label="_edited")
        if ax.get_lines():
            ax.legend(loc="upper right", fontsize="small", ncols=2)
    axes[-1].set_xlabel("time (s)" if fps else "frame")
    return figure
