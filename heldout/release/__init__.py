"""The release itself: the registry of released experiments (`registry`), the folder layout
of experiments, ratios and runs (`layout`, each run found once by `run_folders`), the aux
arrays of a run (`aux_arrays`, checked by `aux_kernels`), reading many runs (`reading`) and
the recorded label corruption (`label_corruption`). No TensorFlow.
"""
