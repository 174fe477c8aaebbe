"""Baselines that SINE is benchmarked against (the classical pick → locate → magnitude chain)."""
