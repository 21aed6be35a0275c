"""Re-evaluating released checkpoints: restore, evaluate, cross-check every prediction
against the aux arrays (`evaluate`), and the same for many runs over Dask with resumable
run records (`fanout`, `records`, `options`). Modules are imported by name: `fanout` must
stay free of TensorFlow until a worker evaluates.
"""
