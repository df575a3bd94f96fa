"""The local model registry: runs, references, pruning, tracking.

`store` (runs published atomically, `latest`/`best` references, comparable groups, removal) ->
`run_table` (what `taxifare models` lists) and `prune`; `tracking` (runs and evaluations in MLflow).
"""
