"""The score engine: C-scores, memorization and influence from aux arrays; no TensorFlow.

A `ScoreRequest` (`request`) goes to `score_experiment` (`experiment`) or, over Dask,
`score_on_cluster` (`fanout`); results (`results`) are written by `file.save_scores`.
"""
