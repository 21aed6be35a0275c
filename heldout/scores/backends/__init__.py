"""Influence backends: one `InfluenceBackend` class each, found through `registry`.

`numpy_gemm` is the exact reference; `bitplanes` + `popcount` count on the CPU, `tf_gpu`
on a GPU (the one module of `heldout.scores` that imports TensorFlow, loaded by name).
"""
