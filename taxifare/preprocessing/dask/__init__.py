"""preprocess on a Dask cluster: the same cleaning and features, one partition of the input per task.

The data flow, one module each: `plan` (the input split into partitions: byte ranges of CSV files, or
BigQuery sub-windows) -> `tasks` (what a worker runs: scan a partition, find the duplicates of one hash
bucket, settle a partition into its final part) -> `parts` (the files they leave in the parts folder)
-> `run` (the client: connects through `connect`, runs the phases, assembles the one processed CSV).
"""
