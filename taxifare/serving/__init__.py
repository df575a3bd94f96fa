"""A run of the registry put to use on raw rides: `ride_blocks` (a CSV or stdin, opened by the one raw
reader, in blocks of rows with the rule each unusable row breaks) -> `predict` (one ride or a CSV of
rides) and `evaluate` (scores on labelled rides; `in_sample`: the rides the run trained on)."""
