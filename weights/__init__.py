"""Weights shipped with sine-seisbench (SeisBench format); see README.md in this folder."""
