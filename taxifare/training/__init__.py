"""Training: processed chunks -> one Keras model -> a run in the registry.

`data` (the processed CSV read in line ranges, split into three sets by `splits`; feature statistics,
chunk plans, read-ahead) -> `start` (a run fresh, warm-started or resumed) -> `loop` (passes, early
stopping, the learning-rate schedule; `train` is the entry point) with `state` (typed state) and
`checkpoint` -> `report` (test figures, params, metrics, history and plot, published to the registry).
On several machines: `tf_cluster` (TF_CONFIG, the peers) -> `distributed` (the team of workers) with
`shards` (each worker's rows).
"""
