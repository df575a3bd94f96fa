"""The Keras model: `network` (build, save, load in safe mode, predict; its version) and `embeddings`
(periodic embeddings of the numeric features, registered for Keras serialization)."""
