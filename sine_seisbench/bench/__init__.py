"""Benchmarks: evaluation of pickers on labelled SeisBench datasets."""
