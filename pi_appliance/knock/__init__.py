"""The knock listener: authenticated single-packet knocks, clock-derived and plain sequences, the tick
pool. ``engine``, ``matcher``, ``pool``, ``auth`` and ``packet`` are pure; ``listeners`` and
``service`` do the I/O; ``client`` is the sending side (``pictl knock``)."""
