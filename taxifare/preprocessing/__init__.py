"""preprocess: raw rides -> one processed CSV and its manifest.

`run` (the entry point: one writer per output, the engine chosen by the settings) -> `local` (this
process, chunk by chunk, a features thread beside it) or `dask` (a Dask cluster, partition by
partition): two peers that share `pipeline` (output planning: reuse, resume or start over; the result
and its log lines) and `sink` (the processed CSV written by a writer and a recorder thread with
`processed_text`, its encoder; the manifest, published by rename), and never import each other.
`provenance` says whether an output belongs to its input.
"""
