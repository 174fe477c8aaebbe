"""Shipped travel-time tables (:mod:`sine_seisbench.traveltimes`): the default velocity model's table and TauP
model, named by the digest of the model and grid they were computed from, so that a first run needs no TauP
build. Any other model is built once and cached."""
