"""Ditto's shipped configuration: the cfg pickle read safely and mapped onto our options.

Ditto never runs without its configuration pickle (Hub repo
``digital-avatar/ditto-talkinghead``: ``ditto_cfg/v0.4_hubert_cfg_pytorch.pkl``
for files, ``ditto_cfg/v0.4_hubert_cfg_trt_online.pkl`` for streaming).  Its
layout (Ditto ``core/atomic_components/cfg.py`` ``parse_cfg``) is a dict:

* ``base_cfg``: model paths of Ditto's own pipeline — not used here;
* ``audio2motion_cfg``: ``motion_feat_dim`` (265), ``audio_feat_dim``
  (1103), ``seq_frames`` (80), ``use_emo``/``use_sc``/``use_eye_open``/
  ``use_eye_ball`` (which condition parts exist), ``w2f_type`` ("hubert");
* ``default_kwargs``: the setup options of ``StreamSDK.setup``
  (stream_pipeline_offline.py / stream_pipeline_online.py), every key optional.

The file is read with :func:`talkinghead.safe_pickle.load_plain_pickle`
(NumPy arrays and builtin containers only; any other global is refused by
name before anything runs).  :class:`DittoConfig` then maps every
``default_kwargs`` key onto our options; a missing key keeps Ditto's code
default (``StreamSDK.setup``'s ``kwargs.get`` defaults, e.g. 50 sampling
steps), and the user's explicit choices override both.

=======================  ==================================================
``default_kwargs`` key   where it goes
=======================  ==================================================
sampling_timesteps       :attr:`AudioDriverOptions.steps` (default 50)
emo                      :attr:`AudioDriverOptions.emotion` (default 4)
ch_info                  :attr:`AudioDriverOptions.reference` and
                         :attr:`PostprocessOptions.reference_scale`
overlap_v2, smo_k_d,     :class:`WindowConfig` (10, 3, 0, None, None)
fix_kp_cond(_dim),
v_min_max_for_clip
use_d_keys, relative_d,  :class:`PostprocessOptions` ``driven``, ``relative``,
drive_eye,               ``drive_eyes``, ``blink_template``, ``blink_gaps``
delta_eye_arr,           (``delta_eye_open_n`` default 0 = random 60–100),
delta_eye_open_n,        ``fade``, ``fade_keys``, ``stitching``,
fade_type,               ``overall``, ``per_frame``
fade_out_keys,
flag_stitching,
overall_ctrl_info,
ctrl_info
max_size, crop_scale,    :class:`SourceSettings` (1920, 2.3, 0, −0.125, True)
crop_vx_ratio,
crop_vy_ratio,
crop_flag_do_rot
eye_f0_mode              reference eyes: the first measurement only
online_mode, N_d         not settings here: the job decides offline/online;
                         the clip length is the audio's
template_n_frames,       video sources only (not supported by the audio job)
smo_k_s
=======================  ==================================================
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import torch

from ....errors import ControlError, WeightsError
from ....motion.frame import NUM_KP
from ....motion.keypoints import NUM_BINS
from ....safe_pickle import load_plain_pickle
from ..backend import SourceSettings
from .condition import ConditionParts, Emotion, EyeConditions, ReferenceCharacter, emotion_sequence
from .driver import DEFAULT_STEPS, AudioDriverOptions
from .files import DITTO_FILES
from .postprocess import (
    DRIVABLE_KEYS,
    IMAGE_DRIVEN,
    MOTION_DIM,
    DittoControls,
    PostprocessOptions,
    blink_options,
)
from .windows import WindowConfig

_CONTROL_KEYS = {"delta_pitch", "delta_yaw", "delta_roll", "alpha_pitch", "alpha_yaw", "alpha_roll",
                 "delta_exp", "vad_alpha", "fade_alpha"}
_USED_KEYS = {
    "sampling_timesteps", "emo", "ch_info", "overlap_v2", "smo_k_d", "fix_kp_cond", "fix_kp_cond_dim",
    "v_min_max_for_clip", "use_d_keys", "relative_d", "drive_eye", "delta_eye_arr", "delta_eye_open_n",
    "fade_type", "fade_out_keys", "flag_stitching", "overall_ctrl_info", "ctrl_info", "max_size", "crop_scale",
    "crop_vx_ratio", "crop_vy_ratio", "crop_flag_do_rot", "eye_f0_mode",
}
_NOT_SETTINGS = {"online_mode", "N_d", "template_n_frames", "smo_k_s"}


def _fail(source: str, what: str) -> WeightsError:
    return WeightsError(f"{source}: not a usable Ditto configuration: {what}. Download "
                        f"{DITTO_FILES['config'].filename} again, or pass the right file with --ditto-config")


def _array(value: Any, source: str, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """``value`` as a float32 array of ``shape`` (None = any length ≥ 1)."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise _fail(source, f"{key} is not numeric ({error})") from error
    if array.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, array.shape)) \
            or 0 in array.shape or not np.isfinite(array).all():
        want = " × ".join("n" if n is None else str(n) for n in shape)
        raise _fail(source, f"{key} must be a finite {want} array, got shape {array.shape}")
    return array


def _controls(value: Any, source: str, key: str) -> DittoControls:
    """One Ditto ``ctrl_kwargs`` dict → :class:`DittoControls` (motion_stitch.py ``ctrl_motion``, ``ctrl_vad``, ``fade``)."""
    if not isinstance(value, Mapping):
        raise _fail(source, f"{key} must be a dict of controls, got {type(value).__name__}")
    unknown = sorted(set(value) - _CONTROL_KEYS)
    if unknown:
        warnings.warn(f"{source}: {key}: ignoring controls we do not implement: {', '.join(map(str, unknown))}",
                      stacklevel=4)
    values: dict[str, Any] = {}
    for name in _CONTROL_KEYS & set(value):
        if name == "delta_exp":
            values[name] = torch.from_numpy(_array(np.reshape(value[name], -1), source, f"{key}.delta_exp", (None,)))
        else:
            values[name] = float(value[name])
    try:
        return DittoControls(**values)
    except ControlError as error:
        raise _fail(source, f"{key}: {error}") from error


def _per_frame(value: Any, source: str) -> dict[int, DittoControls]:
    """``ctrl_info``: a dict frame → controls, or a list with one entry per frame (``StreamSDK._get_ctrl_info``)."""
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        raise _fail(source, f"ctrl_info must be a dict or a list, got {type(value).__name__}")
    return {int(frame): _controls(ctrl, source, f"ctrl_info[{frame}]") for frame, ctrl in items if ctrl}


def _driven(value: Any, source: str) -> dict[str, float]:
    """``use_d_keys``: None (image default), a list/tuple of keys (gain 1) or a dict key → gain."""
    if value is None:
        return dict(IMAGE_DRIVEN)
    keys = dict(value) if isinstance(value, Mapping) else {k: 1.0 for k in value}
    unknown = [k for k in keys if k not in DRIVABLE_KEYS]
    if unknown:
        raise _fail(source, f"use_d_keys names {unknown[0]!r}; the fields are {', '.join(DRIVABLE_KEYS)}")
    return {k: float(g) for k, g in keys.items()}


def _emotion(value: Any, source: str) -> Emotion:
    """``emo``: int, list of ints, list of lists, or an (M, 8) array (condition_handler.py ``_parse_emo_seq``)."""
    if isinstance(value, np.ndarray) and value.ndim == 2:
        emotion: Emotion = torch.from_numpy(_array(value, source, "emo", (None, 8)))
    elif isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        emotion = int(value)
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        emotion = [[int(label) for label in labels] for labels in value]
    elif isinstance(value, (list, tuple)) and value:
        emotion = [int(label) for label in value]
    else:
        raise _fail(source, f"emo must be a label 0–7, a list of labels, a list of label lists or an (M, 8) "
                            f"array, got {type(value).__name__}")
    try:
        emotion_sequence(emotion)
    except ControlError as error:
        raise _fail(source, f"emo: {error}") from error
    return emotion


def _reference(value: Any, source: str, first_eyes_only: bool) -> ReferenceCharacter:
    """``ch_info``: ``x_s_info_lst`` (per-frame motion dicts), ``sc``, ``eye_open_lst``, ``eye_ball_lst``."""
    try:
        first = value["x_s_info_lst"][0]
        fields = {k: _array(first[k], source, f"ch_info x_s_info_lst[0].{k}", (1, n))
                  for k, n in (("scale", 1), ("pitch", NUM_BINS), ("yaw", NUM_BINS), ("roll", NUM_BINS),
                               ("t", 3), ("exp", 3 * NUM_KP))}
        sc = _array(np.reshape(value["sc"], -1), source, "ch_info.sc", (None,))
        opens = np.concatenate([_array(e, source, "ch_info.eye_open_lst", (None, 2)) for e in value["eye_open_lst"]])
        balls = np.concatenate([_array(e, source, "ch_info.eye_ball_lst", (None, 6)) for e in value["eye_ball_lst"]])
    except (KeyError, IndexError, TypeError) as error:
        raise _fail(source, f"ch_info lacks {error}; it needs x_s_info_lst, sc, eye_open_lst and eye_ball_lst") from error
    if sc.shape != (3 * NUM_KP,) or len(opens) != len(balls):
        raise _fail(source, f"ch_info.sc must hold 63 values and the eye lists match, got {sc.shape}, "
                            f"{len(opens)} and {len(balls)} eye entries")
    row = np.concatenate([fields["scale"] - 1] + [fields[k] for k in ("pitch", "yaw", "roll", "t", "exp")], axis=1)
    count = 1 if first_eyes_only else len(opens)
    eyes = tuple(EyeConditions(torch.from_numpy(opens[i].copy()), torch.from_numpy(balls[i].copy()))
                 for i in range(count))
    return ReferenceCharacter(torch.from_numpy(row[0]), torch.from_numpy(sc.copy()), eyes,
                              float(fields["scale"][0, 0]))


@dataclass(frozen=True, eq=False)
class DittoConfig:
    """Ditto's configuration, validated and mapped onto our options.

    Build it with :meth:`load`; :meth:`driver_options` gives the settings of
    a job, with the user's explicit choices on top.

    Attributes:
        source: where it was read from (for messages).
        driver: the audio → motion settings the configuration gives (seed 0).
        source_settings: how the source photo is sized and cropped.
        parts: the condition parts of ``audio2motion_cfg``.
        condition_dim: ``audio2motion_cfg['audio_feat_dim']`` (1103), or None if absent.
        motion_dim: ``motion_feat_dim`` (265) or None.
        seq_len: ``seq_frames`` (80) or None.
    """

    source: str
    driver: AudioDriverOptions
    source_settings: SourceSettings
    parts: ConditionParts
    condition_dim: int | None
    motion_dim: int | None
    seq_len: int | None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DittoConfig":
        """Read a Ditto cfg pickle safely and map it (see the module table).

        Raises:
            WeightsError: unreadable, unsafe (a non-data global — named), or
                malformed (the message names the key and what is wrong).
        """
        return cls.from_dict(load_plain_pickle(path), os.fspath(path))

    @classmethod
    def from_dict(cls, cfg: Any, source: str = "Ditto configuration") -> "DittoConfig":
        """Map an already unpickled configuration dict (see :meth:`load`).

        Raises:
            WeightsError: malformed configuration.
        """
        if not isinstance(cfg, Mapping) or not isinstance(cfg.get("default_kwargs", {}), Mapping) \
                or not isinstance(cfg.get("audio2motion_cfg", {}), Mapping):
            raise _fail(source, "expected a dict with 'audio2motion_cfg' and 'default_kwargs' dicts")
        model = cfg.get("audio2motion_cfg", {})
        kwargs = dict(cfg.get("default_kwargs", {}))
        if model.get("w2f_type", "hubert") != "hubert":
            raise _fail(source, f"w2f_type {model['w2f_type']!r}: only the HuBERT audio encoder is supported")
        parts = ConditionParts(*(bool(model.get(k, True)) for k in ("use_emo", "use_eye_open", "use_eye_ball", "use_sc")))
        unknown = sorted(set(kwargs) - _USED_KEYS - _NOT_SETTINGS)
        if unknown:
            warnings.warn(f"{source}: ignoring settings we do not know: {', '.join(map(str, unknown))}", stacklevel=3)
        try:
            driver = cls._driver(kwargs, source, parts)
            settings = SourceSettings(int(kwargs.get("max_size", 1920)), float(kwargs.get("crop_scale", 2.3)),
                                      float(kwargs.get("crop_vx_ratio", 0.0)), float(kwargs.get("crop_vy_ratio", -0.125)),
                                      bool(kwargs.get("crop_flag_do_rot", True)))
        except (TypeError, ValueError) as error:
            raise _fail(source, str(error)) from error
        dims = [model.get(k) for k in ("audio_feat_dim", "motion_feat_dim", "seq_frames")]
        return cls(source, driver, settings, parts, *(None if d is None else int(d) for d in dims))

    @staticmethod
    def _driver(kwargs: Mapping[str, Any], source: str, parts: ConditionParts) -> AudioDriverOptions:
        clip = kwargs.get("v_min_max_for_clip")
        fix_dims = kwargs.get("fix_kp_cond_dim")
        try:
            windows = WindowConfig(
                overlap=int(kwargs.get("overlap_v2", 10)), smoothing_kernel=int(kwargs.get("smo_k_d", 3)),
                fix_kp_cond=int(kwargs.get("fix_kp_cond", 0)),
                fix_kp_cond_dims=None if fix_dims is None else (int(fix_dims[0]), int(fix_dims[1])),
                clip_range=None if clip is None else torch.from_numpy(_array(clip, source, "v_min_max_for_clip",
                                                                             (None, MOTION_DIM))),
            )
            if windows.clip_range is not None and len(windows.clip_range) < 2:
                raise _fail(source, "v_min_max_for_clip needs at least 2 rows (min, max)")
            reference = kwargs.get("ch_info")
            reference = None if reference is None else _reference(reference, source, bool(kwargs.get("eye_f0_mode", False)))
            template = kwargs.get("delta_eye_arr")
            gaps = kwargs.get("delta_eye_open_n", 0)
            if isinstance(gaps, (list, tuple)):
                gaps = [int(g) for g in gaps]
            else:
                gaps = None if int(gaps) == 0 else int(gaps)
            fade = kwargs.get("fade_type", "") or ""
            drive_eye = kwargs.get("drive_eye")  # None: True for an image source (motion_stitch.py setup)
            post = PostprocessOptions(
                drive_eyes=True if drive_eye is None else bool(drive_eye),
                blink_template=None if template is None else torch.from_numpy(_array(template, source, "delta_eye_arr",
                                                                                     (None, 3 * NUM_KP))),
                blink_gaps=gaps, blink_seed=0,
                driven=_driven(kwargs.get("use_d_keys"), source),
                relative=bool(kwargs.get("relative_d", True)),
                reference_scale=None if reference is None else reference.scale,
                fade=fade, fade_keys=tuple(kwargs.get("fade_out_keys", ("exp",))),
                stitching=bool(kwargs.get("flag_stitching", True)),
                overall=_controls(kwargs.get("overall_ctrl_info") or {}, source, "overall_ctrl_info"),
                per_frame=_per_frame(kwargs.get("ctrl_info") or {}, source),
            )
            return AudioDriverOptions(
                steps=int(kwargs.get("sampling_timesteps", DEFAULT_STEPS)),
                emotion=_emotion(kwargs.get("emo", 4), source), windows=windows, post=post,
                reference=reference, parts=parts,
            )
        except ControlError as error:
            raise _fail(source, str(error)) from error

    def check_model(self, motion_dim: int, condition_dim: int, seq_len: int, source: str) -> None:
        """Refuse a configuration whose ``audio2motion_cfg`` does not fit the loaded LMDM.

        Args:
            motion_dim, condition_dim, seq_len: the checkpoint's (265, 1103, 80).
            source: the checkpoint's path (for the message).

        Raises:
            WeightsError: a dimension differs, or the condition parts do not
                add up to the checkpoint's condition width.
        """
        for name, ours, theirs in (("motion_feat_dim", self.motion_dim, motion_dim),
                                   ("audio_feat_dim", self.condition_dim, condition_dim),
                                   ("seq_frames", self.seq_len, seq_len)):
            if ours is not None and ours != theirs:
                raise WeightsError(f"{self.source}: {name} is {ours} but {source} has {theirs}: the configuration "
                                   "belongs to another model version; use the pair from the same Ditto release")
        if self.parts.width != condition_dim:
            raise WeightsError(f"{self.source}: the condition parts it enables are {self.parts.width} wide but "
                               f"{source} takes {condition_dim}; use the pair from the same Ditto release")

    def driver_options(self, *, steps: int | None = None, seed: int | None = AudioDriverOptions.seed,
                       emotion: Emotion | None = None, blinks: str | None = None) -> AudioDriverOptions:
        """The configuration's settings with the user's explicit choices on top.

        Args:
            steps: DDIM steps, or None for the configuration's.
            seed: random seed of the sampler and of random blink gaps.
            emotion: emotion, or None for the configuration's ``emo``.
            blinks: None for the configuration's eyes (its blink template and
                schedule if it has one, else the generated eye motion), or a
                :data:`.postprocess.BLINK_MODES` choice: "model" generated eye
                motion, "template" the configuration's blink template (our
                synthetic one if it has none) on its schedule, "off" the
                source's eyes.

        Raises:
            ControlError: unknown blink mode or invalid emotion.
        """
        base = self.driver
        post = replace(base.post, blink_seed=seed) if blinks is None else blink_options(blinks, seed, base.post)
        if emotion is not None:
            emotion_sequence(emotion)
        return replace(base, steps=base.steps if steps is None else steps, seed=seed,
                       emotion=base.emotion if emotion is None else emotion, post=post)

