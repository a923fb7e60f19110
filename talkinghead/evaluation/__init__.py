"""Evaluation: the field's metrics between videos, and the self-/cross-reenactment and audio protocols.

``python -m talkinghead eval compare|reenact|audio`` (:mod:`.command`); the metrics (:mod:`.metrics` for
frames, :mod:`.identity` for landmarks and face identity, :mod:`.motion_metrics` for expression and pose),
the protocols (:mod:`.protocols`) and the report (:mod:`.report`).  Job glue (stage of the jobs): it calls
only the public :class:`~talkinghead.engine.Engine` API.
"""
