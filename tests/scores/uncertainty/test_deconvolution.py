"""The NPMLE prior behind the run planner, on populations with known answers."""

import numpy as np

from heldout.scores.uncertainty.deconvolution import Prior, fit_prior


def _mean(prior: Prior) -> np.ndarray:
    return prior.weights @ prior.atoms


def test_a_point_mass_is_recovered_as_one():
    rng = np.random.default_rng(0)
    counts = np.full((3000, 1), 40)
    successes = rng.binomial(counts, 0.8)
    prior = fit_prior(successes, counts, np.random.default_rng(1))
    assert abs(prior.weights.sum() - 1.0) < 1e-9
    np.testing.assert_allclose(_mean(prior), [0.8], atol=0.01)
    # Binomial noise is deconvolved: the fitted spread is far below the raw one.
    spread = np.sqrt(prior.weights @ (prior.atoms[:, 0] - _mean(prior)[0]) ** 2)
    assert spread < 0.5 * np.std(successes / counts)


def test_two_groups_are_recovered_with_their_weights():
    rng = np.random.default_rng(2)
    truth = np.where(rng.random(4000) < 0.3, 0.1, 0.9)[:, None]
    counts = np.full_like(truth, 50, dtype=np.int64)
    prior = fit_prior(rng.binomial(counts, truth), counts, np.random.default_rng(3))
    low = prior.weights[prior.atoms[:, 0] < 0.5].sum()
    np.testing.assert_allclose(low, 0.3, atol=0.03)
    np.testing.assert_allclose(_mean(prior), [0.3 * 0.1 + 0.7 * 0.9], atol=0.01)


def test_many_proportions_use_data_atoms_and_sample_the_prior():
    rng = np.random.default_rng(4)
    truth = rng.uniform(0.2, 0.8, size=(500, 3))
    counts = np.full_like(truth, 30, dtype=np.int64)
    counts[:, 2] = 0  # a proportion without data carries no information
    prior = fit_prior(rng.binomial(counts, truth), counts, np.random.default_rng(5))
    assert prior.atoms.shape[1] == 3 and abs(prior.weights.sum() - 1.0) < 1e-9
    np.testing.assert_allclose(_mean(prior)[:2], [0.5, 0.5], atol=0.03)
    sample = prior.sample(100, np.random.default_rng(6))
    assert sample.shape == (100, 3) and ((sample > 0) & (sample < 1)).all()
