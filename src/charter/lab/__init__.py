"""The constitution lab: infer a constitution from human preferences (Inverse CAI), and test which principles a
judge uses and which are redundant."""
