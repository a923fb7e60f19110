"""Ditto's audio→motion (spec ``ditto-audio2motion.md``): HuBERT features, conditions, LMDM diffusion
over windows, post-processing into LivePortrait motion; :class:`.backend.DittoBackend` is its
:class:`~talkinghead.drivers.audio.backend.AudioBackend`."""
