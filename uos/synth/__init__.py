"""Synthetic drilling cycles with exact ground truth: `uos synth` (see generate.py)."""
