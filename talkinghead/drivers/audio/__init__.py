"""Audio driver: speech → LivePortrait motion with Ditto's diffusion model (spec ``ditto-audio2motion.md``)."""
