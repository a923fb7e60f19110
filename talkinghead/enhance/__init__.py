"""enhance stage of talkinghead (see README: data flow)."""
