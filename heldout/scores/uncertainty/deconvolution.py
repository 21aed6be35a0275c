"""The distribution of examples' true probabilities, recovered from binomial counts.

A discrete mixture (Kiefer-Wolfowitz NPMLE, weights fitted by EM) over atoms on a logit
grid (one or two proportions per example) or built from examples' shrunk proportions
(more), so the run planner can simulate larger run budgets without the per-example
binomial noise. Method: docs/methods.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Prior", "fit_prior"]

_EPS = 1e-4
# log(0) as a finite number, so that 0 * log(0) is 0 in matrix products: an exact point
# mass at 0 or 1 (a model always right or always wrong) then has likelihood 1 for the
# counts it can produce and 0 for the others.
_LOG_ZERO = -1e30
# Stop EM once a step gains less mean log-likelihood per example than this. An unconverged
# mixture is too spread out: at 1e-6 (and 200 iterations) CIFAR-10-like memorization at 8
# runs a ratio was predicted 0.033 too reliable at 4x the runs, at 1e-9 0.022; nothing
# moved further at 1e-10.
_CONVERGED = 1e-9
# Distinct count patterns fitted on a grid at most (x 2 401 atoms x 4 bytes: 190 MB).
_MAX_GRID_PATTERNS = 20_000
# Half-width (logit scale) over which draws from an atom built from examples' proportions
# are spread: about half the spacing of the one-proportion grid those atoms come from.
_DATA_ATOM_SPREAD = 0.05


def _axis(half_width: float, points: int) -> np.ndarray:
    """Probabilities on a logit grid, with 0 and 1 themselves at the ends.

    The exact ends matter: true values that sit at 0 or 1 give estimates that are exactly
    tied at every budget, whereas values just inside (1 - 1e-4) give estimates whose ties
    break at random as runs grow, which predicted a reliability that falls with more runs.
    """
    inner = 1.0 / (1.0 + np.exp(-np.linspace(-half_width, half_width, points)))
    return np.concatenate([[0.0, _EPS], inner, [1.0 - _EPS, 1.0]])


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(p > 0, np.log(p), _LOG_ZERO)


def _log_complement(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(p < 1, np.log1p(-p), _LOG_ZERO)


def _binomial_log_likelihood(x: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[len(x), len(p)]: log P(x | n, p) without the binomial coefficient."""
    return x[:, None] * _log(p)[None, :] + (n - x)[:, None] * _log_complement(p)[None, :]


def _em_weights(log_likelihood: np.ndarray, counts: np.ndarray, iterations: int) -> np.ndarray:
    """NPMLE mixture weights over the columns (rows weighted by `counts`).

    EM for mixture weights converges slowly, and an unconverged mixture is too spread
    out, which would over-predict reliability; SQUAREM (Varadhan & Roland, Scand. J.
    Statist. 2008) extrapolates two EM steps at a time, guarded so that the likelihood
    never decreases. Each of the `iterations` costs three EM steps.
    """
    # float32 halves the memory traffic of the two products per step, which dominate.
    likelihood = np.exp(log_likelihood - log_likelihood.max(axis=1, keepdims=True))
    likelihood = likelihood.astype(np.float32)
    share = (counts / counts.sum()).astype(np.float32)

    def step(weights: np.ndarray) -> np.ndarray:
        mixture = np.maximum(likelihood @ weights.astype(np.float32), 1e-30)
        updated = weights * (likelihood.T @ (share / mixture)).astype(np.float64)
        return updated / updated.sum()

    def objective(weights: np.ndarray) -> float:
        mixture = np.maximum(likelihood @ weights.astype(np.float32), 1e-30)
        return float(share.astype(np.float64) @ np.log(mixture.astype(np.float64)))

    weights = _starting_weights(log_likelihood, counts)
    previous = -np.inf
    for _ in range(iterations):
        first = step(weights)
        second = step(first)
        r = first - weights
        v = second - first - r
        norm_v = float(np.sqrt(v @ v))
        if norm_v == 0.0:
            weights = second
            break
        alpha = -float(np.sqrt(r @ r)) / norm_v
        proposal = np.maximum(weights - 2 * alpha * r + alpha * alpha * v, 0.0)
        proposal = step(proposal / proposal.sum())
        value, fallback = objective(proposal), objective(second)
        weights, value = (proposal, value) if value >= fallback else (second, fallback)
        if value - previous < _CONVERGED:
            break
        previous = value
    return weights


def _starting_weights(log_likelihood: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The share of rows that an exact point mass explains fully on it; the rest uniform.

    Near 0 and 1 the likelihood is almost flat (p**n for p = 1 - 1e-4 or 1), so the NPMLE
    barely prefers the end to the atoms just inside it, and EM keeps roughly the split it
    starts from. From a uniform start the mass of "always right" examples stays spread over
    those inner atoms, whose ties the simulation breaks at random at large budgets: a
    reliability that falls with more runs. Among near-equal fits this start takes the
    simplest, with the point masses the data are consistent with, and EM moves mass off
    them only where the data ask for it.
    """
    num_atoms = log_likelihood.shape[1]
    share = counts / counts.sum()
    exact = log_likelihood == 0.0
    explained = exact.any(axis=1)
    on_exact = (share[explained] / exact[explained].sum(axis=1)) @ exact[explained]
    return on_exact + (1.0 - on_exact.sum()) / num_atoms


def _posterior_means(x: np.ndarray, n: np.ndarray, iterations: int) -> np.ndarray:
    """Each example's posterior mean under a 1-D NPMLE prior of this proportion."""
    grid = _axis(8.0, 161)
    pairs, inverse, counts = np.unique(
        np.stack([x, n], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    log_likelihood = _binomial_log_likelihood(
        pairs[:, 0].astype(np.float64), pairs[:, 1].astype(np.float64), grid
    )
    weights = _em_weights(log_likelihood, counts.astype(np.float64), iterations)
    posterior = np.exp(log_likelihood - log_likelihood.max(axis=1, keepdims=True)) * weights
    means = (posterior @ grid) / posterior.sum(axis=1)
    return means[inverse.reshape(-1)]


@dataclasses.dataclass(frozen=True)
class Prior:
    """A discrete distribution of true probability vectors.

    Attributes:
      atoms: float64 [K, D]: the support.
      weights: float64 [K]: their probabilities (sum to 1).
    """

    atoms: np.ndarray
    weights: np.ndarray
    logit_spread: float = 0.0

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """float64 [size, D] true vectors drawn from the prior.

        Proportions strictly inside (0, 1) are spread uniformly over +-`logit_spread` on
        the logit scale (the resolution of the fit): an NPMLE is discrete even when the
        truth is not, and examples drawn from one atom would otherwise be tied in truth,
        their order noise at any budget, a ceiling the data never showed. Proportions at
        exactly 0 or 1 stay there: those ties are real (every run right, or every run wrong).
        """
        drawn = self.atoms[rng.choice(self.weights.size, size, p=self.weights)]
        inside = (drawn > 0.0) & (drawn < 1.0)
        if self.logit_spread > 0 and inside.any():
            values = drawn[inside]
            logits = np.log(values) - np.log1p(-values)
            logits += rng.uniform(-self.logit_spread, self.logit_spread, logits.size)
            drawn[inside] = 1.0 / (1.0 + np.exp(-logits))
        return drawn

    @property
    def point_mass_share(self) -> tuple[float, float]:
        """The prior's mass with every proportion exactly 0, and exactly 1."""
        return (
            float(self.weights[np.all(self.atoms == 0.0, axis=1)].sum()),
            float(self.weights[np.all(self.atoms == 1.0, axis=1)].sum()),
        )


def fit_prior(
    successes: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
    atom_examples: int = 400,
    fit_examples: int = 4000,
    iterations: int = 1000,
) -> Prior:
    """The NPMLE of the distribution of true probability vectors behind the counts.

    Args:
      successes, counts: int [N, D]: per example, D binomial counts (count 0 allowed: that
        proportion then carries no information about the example).
      rng: for the samples of examples.
      atom_examples: examples whose (shrunk) vectors become atoms (3 atoms each).
      fit_examples: examples whose likelihood fits the atoms' weights (more than two
        proportions; one or two are fitted on a grid from every example's counts, or
        20 000 examples' where their patterns are more).
      iterations: EM iterations, for the per-proportion grids and for the weights.

    Returns:
      The fitted prior.
    """
    x = np.asarray(successes, dtype=np.int64)
    n = np.asarray(counts, dtype=np.int64)
    num, dims = x.shape
    if dims <= 2:
        return _fit_on_grid(x, n, rng, iterations)
    means = np.column_stack([_posterior_means(x[:, d], n[:, d], iterations) for d in range(dims)])
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(n > 0, x / n, means)
    chosen = rng.choice(num, min(atom_examples, num), replace=False)
    atoms = np.concatenate(
        [means[chosen] + shrink * (raw[chosen] - means[chosen]) for shrink in (0.0, 0.5, 1.0)]
    )
    # Proportions of exactly 0 or 1 stay there (every run right, or every run wrong: the
    # point masses a clip would move just inside, see `_axis`); and the two corners.
    inside = np.clip(atoms, _EPS, 1.0 - _EPS)
    atoms = np.concatenate(
        [np.where((atoms == 0) | (atoms == 1), atoms, inside), np.zeros((2, dims))]
    )
    atoms[-1] = 1.0
    atoms = np.unique(atoms, axis=0)
    fitted = rng.choice(num, min(fit_examples, num), replace=False)
    xf, nf = x[fitted].astype(np.float64), n[fitted].astype(np.float64)
    log_likelihood = xf @ _log(atoms).T + (nf - xf) @ _log_complement(atoms).T
    weights = _em_weights(log_likelihood, np.ones(fitted.size), iterations)
    keep = weights > 1e-12
    return Prior(
        atoms=atoms[keep],
        weights=weights[keep] / weights[keep].sum(),
        logit_spread=_DATA_ATOM_SPREAD,
    )


def _fit_on_grid(x, n, rng, iterations: int) -> Prior:
    """The NPMLE over a full logit grid, for one or two proportions per example.

    A grid can hold a point mass exactly, which data-derived atoms cannot: a population
    whose true values coincide is then not fitted with a spread that only shows, as
    spurious signal, at larger budgets. Examples with the same counts share a row.
    """
    dims = x.shape[1]
    axis = _axis(7.0, 45 if dims == 2 else 161)
    atoms = np.stack(np.meshgrid(*[axis] * dims, indexing="ij"), axis=-1).reshape(-1, dims)
    # Every example when their count patterns are few (small budgets, where a sample's
    # noise would show most in the prediction), else a sample of them.
    patterns, weights_of = np.unique(np.concatenate([x, n], axis=1), axis=0, return_counts=True)
    if patterns.shape[0] > _MAX_GRID_PATTERNS:
        fitted = rng.choice(x.shape[0], _MAX_GRID_PATTERNS, replace=False)
        patterns, weights_of = np.unique(
            np.concatenate([x[fitted], n[fitted]], axis=1), axis=0, return_counts=True
        )
    px, pn = patterns[:, :dims].astype(np.float64), patterns[:, dims:].astype(np.float64)
    log_likelihood = px @ _log(atoms).T + (pn - px) @ _log_complement(atoms).T
    weights = _em_weights(log_likelihood, weights_of.astype(np.float64), iterations)
    keep = weights > 1e-12
    spacing = float(np.diff(np.log(axis[2:-2]) - np.log1p(-axis[2:-2])).max())
    return Prior(
        atoms=atoms[keep], weights=weights[keep] / weights[keep].sum(), logit_spread=spacing / 2
    )
