"""The papers' published files (C-scores, high-influence pairs, class-wise influence):
read, checked and written in the same formats, plus comparison and analysis against them.

Re-exports only; each format lives in its own module (`cscores`, `pairs`, `classwise`),
their shared checks in `format`. Nothing here imports TensorFlow.
"""

from heldout.errors import PublishedFileError
from heldout.published.classwise import (
    ClassBlock,
    ClasswiseInfluence,
    load_classwise_influence,
    save_classwise_influence,
)
from heldout.published.cscores import CScoreFile, load_cscores, save_cscores
from heldout.published.describe import describe
from heldout.published.format import (
    CLASSWISE_KEYS,
    CSCORE_KEYS,
    DEFAULT_MIN_INFLUENCE,
    DEFAULT_MIN_MEMORIZATION,
    PAIR_KEYS,
    pickled_members,
)
from heldout.published.pairs import (
    PublishedPairs,
    load_influence_pairs,
    pairs_file_name,
    save_influence_pairs,
    select_pairs_dense,
    select_pairs_topk,
    thresholds_in_name,
)

__all__ = [
    "CLASSWISE_KEYS",
    "CSCORE_KEYS",
    "ClassBlock",
    "ClasswiseInfluence",
    "CScoreFile",
    "DEFAULT_MIN_INFLUENCE",
    "DEFAULT_MIN_MEMORIZATION",
    "PAIR_KEYS",
    "PublishedFileError",
    "PublishedPairs",
    "describe",
    "load_classwise_influence",
    "load_cscores",
    "load_influence_pairs",
    "pairs_file_name",
    "pickled_members",
    "save_classwise_influence",
    "save_cscores",
    "save_influence_pairs",
    "select_pairs_dense",
    "select_pairs_topk",
    "thresholds_in_name",
]
