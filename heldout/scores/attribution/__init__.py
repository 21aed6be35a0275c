"""Data attribution scored against retrained runs: the linear datamodeling score (LDS).

`lds` computes the metric from arrays, `inputs` reads an attribution file in any of the
accepted layouts, `split` keeps estimation and evaluation runs apart and `baselines`
estimates the reference attributions from the estimation runs only.
"""
