"""Continuous monitoring: SINE over live or replayed multi-station data, picks and events published as they happen.

Data flow (one way): a :class:`~sine_seisbench.monitor.base.Source` yields raw messages → :mod:`.schema` decodes
them into waveform packets → :class:`~sine_seisbench.monitor.engine.StreamingClassifier` buffers them per
channel, runs SINE window by window and merges picks and events across windows → :class:`.base.Sink` objects
publish them → the source commits what is done (:class:`~sine_seisbench.monitor.service.Monitor`).
"""
