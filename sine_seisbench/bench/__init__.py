"""Benchmarks of SINE against published pickers and the classical pick → locate → magnitude chain."""
