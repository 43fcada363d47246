"""The application layer: what the command line, the dashboard, ``falcon demo`` and ``falcon
calibrate`` do with searches, free of how each presents it. :mod:`.submit` (build, check and
publish a submission, await its result), :mod:`.searches` (load a search, list, rebuild),
:mod:`.audit` (a search's timeline)."""
