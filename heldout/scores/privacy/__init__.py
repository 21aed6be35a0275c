"""Membership inference against every run of a release: LiRA with the other runs as shadows.

`shadows` accumulates per-example sums over the runs once and fits IN/OUT Gaussians that
leave the target run out, `attacks` scores (online and offline LiRA, the loss threshold),
`roc` evaluates them pooled over target runs, `audit` runs it all over an experiment.
"""
