"""Ditto's checkpoint files on the Hub (``digital-avatar/ditto-talkinghead``, Apache-2.0), read by :mod:`.backend`.

Importing this module registers the family ``"ditto"`` (:func:`talkinghead.weights.register_weights`),
the key of ``--ditto-revision`` / ``revision={"ditto": ...}``; :mod:`talkinghead.drivers.audio` imports it.
It imports nothing heavy.
"""

from __future__ import annotations

from ....weights import HubFile, env_revision, register_weights

DITTO_REPO = "digital-avatar/ditto-talkinghead"
"""Hub id of Ditto's weights."""

DITTO_REVISION_ENV = "TALKINGHEAD_DITTO_REVISION"
"""Environment variable holding the default revision of :data:`DITTO_REPO`."""

DITTO_REVISION = env_revision(DITTO_REVISION_ENV)
"""Hub revision of ``digital-avatar/ditto-talkinghead`` (Apache-2.0); ``main`` until it is pinned
(see :data:`talkinghead.models.liveportrait.LIVEPORTRAIT_REVISION` for why)."""

DITTO_FILES: dict[str, HubFile] = {
    name: HubFile(DITTO_REPO, path, DITTO_REVISION, size)
    for name, path, size in (
        ("lmdm", "ditto_pytorch/models/lmdm_v0.4_hubert.pth", 191_200_000),
        ("audio_encoder", "ditto_pytorch/aux_models/hubert_streaming_fix_kv.onnx", 1_400_000_000),
        ("face_landmarker", "ditto_pytorch/aux_models/face_landmarker.task", 3_800_000),
        ("config", "ditto_cfg/v0.4_hubert_cfg_pytorch.pkl", 60_000),
        ("config_online", "ditto_cfg/v0.4_hubert_cfg_trt_online.pkl", 60_000),
    )
}
"""Ditto's audio→motion files (about 1.6 GB together; the renderer is LivePortrait's), by role:
``lmdm`` (the denoiser, :class:`talkinghead.models.lmdm.LMDM`), ``audio_encoder`` (HuBERT, ONNX),
``face_landmarker`` (MediaPipe's face mesh, for the eye conditions), ``config`` / ``config_online``
(the offline and streaming configurations, :mod:`.config`)."""

register_weights("ditto", DITTO_FILES, DITTO_REVISION_ENV)
