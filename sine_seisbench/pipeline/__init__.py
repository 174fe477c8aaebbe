"""The steps every driver composes, in the order data flows through them.

``stream + stations → prepare → run → pick → locate → publish``

* :mod:`.prepare` – a stream and its stations on one sample grid (:func:`~.prepare.prepare_stream`, the
  :class:`~.prepare.StationSet`), invalid samples, sensitivity, windows cut, filled and masked, station groups.
* :mod:`.run` – the network on batches of group windows, predictions stacked per station.
* :mod:`.pick` – SeisBench's trigger rule on the stacked curves.
* :mod:`.events` and :mod:`.locate` – association, the event step (migration, soft arrivals, fit, ML), merging
  and ObsPy Events (:func:`~.locate.locate_record`, :func:`~.locate.estimate_candidates`).
* :mod:`.publish` – picks and events as CSV, QuakeML and annotation miniSEED, and their readers.

The drivers are :meth:`SINE.classify <sine_seisbench.model.SINE.classify>` / ``annotate`` (one record),
:class:`sine_seisbench.monitor.engine.StreamingClassifier` (packets as they come) and
:func:`sine_seisbench.archive.annotate_archive` (an archive in chunks, through ``classify``).
"""
