"""The enhancement checkpoints on the Hub (:data:`ENHANCE_FILES`), read by :mod:`.restore` and :mod:`.upscale`.

Importing this module registers the family ``"enhance"`` (:func:`talkinghead.weights.register_weights`),
the key of ``--enhance-revision`` / ``revision={"enhance": ...}`` (both repos below).
"""

from __future__ import annotations

from ..weights import HubFile, env_revision, register_weights

ENHANCE_REVISION_ENV = "TALKINGHEAD_ENHANCE_REVISION"
"""Environment variable holding the default revision of the enhancement repos."""

ENHANCE_REVISION = env_revision(ENHANCE_REVISION_ENV)
"""Hub revision of the enhancement checkpoints' repositories; the sha256 of
each file in :data:`ENHANCE_FILES`, not the revision, guarantees the exact
file (see :data:`talkinghead.models.liveportrait.LIVEPORTRAIT_REVISION` for why it is ``main``)."""

ENHANCE_FILES: dict[str, HubFile] = {
    "gfpgan": HubFile(
        "gmk123/GFPGAN", "GFPGANv1.4.pth", ENHANCE_REVISION, 348_632_874,
        "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    ),
    "codeformer": HubFile(
        "fudan-generative-ai/hallo2", "CodeFormer/codeformer.pth", ENHANCE_REVISION, 376_637_898,
        "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
    ),
    "realesrgan_x2": HubFile(
        "fudan-generative-ai/hallo2", "realesrgan/RealESRGAN_x2plus.pth", ENHANCE_REVISION, 67_061_725,
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
    ),
}
"""Face restoration and super-resolution checkpoints, verified by sha256.

These are the official release files, re-hosted on the Hub:

* ``gfpgan``: GFPGANv1.4.pth of the GFPGAN v1.3.4 release (Apache-2.0);
* ``codeformer``: codeformer.pth of the CodeFormer v0.1.0 release (NTU S-Lab
  License 1.0: NON-COMMERCIAL use only);
* ``realesrgan_x2``: RealESRGAN_x2plus.pth of the Real-ESRGAN v0.2.1 release
  (BSD-3-Clause).

With ``--weights DIR`` each is read from ``DIR/<filename>`` (e.g.
``DIR/CodeFormer/codeformer.pth``).
"""

register_weights("enhance", ENHANCE_FILES, ENHANCE_REVISION_ENV)
