"""Synthetic experiments with known answers, in the released layout (like `tfds.testing`).

Re-exports only: planted-structure experiments (`synthetic`), runs drawn from given
probabilities (`known_probabilities`), and the folder writer they share.
"""

from heldout.testing.known_probabilities import (
    DESIGNS,
    KnownProbabilities,
    ProbabilityExperiment,
    cscore_like_probabilities,
    plant_pairs,
    point_mass_probabilities,
    probabilities_from_spec,
)
from heldout.testing.synthetic import (
    PlantedStructure,
    SyntheticExperiment,
    SyntheticSpec,
    planted_structure,
    write_synthetic_experiment,
)

__all__ = [
    "DESIGNS",
    "KnownProbabilities",
    "PlantedStructure",
    "ProbabilityExperiment",
    "SyntheticExperiment",
    "SyntheticSpec",
    "cscore_like_probabilities",
    "plant_pairs",
    "planted_structure",
    "point_mass_probabilities",
    "probabilities_from_spec",
    "write_synthetic_experiment",
]
