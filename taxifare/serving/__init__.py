"""A run of the registry put to use: `predict` (one ride or a CSV of rides) and `evaluate` (scores on
labelled rides; `in_sample`: the rides the run trained on)."""
