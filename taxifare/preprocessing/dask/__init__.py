"""preprocess on a Dask cluster: the same cleaning and features, one partition of the input per task.

A peer of the local engine (preprocessing/local.py): both use preprocessing/pipeline.py and sink.py, and
neither imports the other. The data flow, one module each: `plan` (the input split into partitions:
byte ranges of CSV files, or BigQuery sub-windows) -> `sources` (a partition opened by the local
sources) -> `tasks` (what a worker runs: scan a partition, find the duplicates of one hash bucket,
settle a partition into its final part) -> `parts` (the files they leave in the parts folder) ->
`pipeline` (the graph of tasks, partition by partition) -> `run` (the client: connects through
`connect`, runs the phases, assembles the one processed CSV; `target_sum`: the fares' exact sum).
"""
