"""A seeded study's sampler draws trial N from a seed mixed from the study's seed and N, so parallel workers explore
different points while a one-process study stays reproducible.

The problem: every worker process builds the study's sampler from the stored config (Optuna does not store
samplers), so with `sampler.seed: 0` each process starts the same random stream and its first trial proposes the
same parameters as every other worker's first trial: two workers ran one spec twice, and the budget bought fewer
distinct points than it counted.

What Optuna recommends: its FAQ ("How can I obtain reproducible optimization results?") says a fixed sampler seed
makes a *sequential* study reproducible and that distributed or parallel optimisation is inherently
non-deterministic; for its own parallel workers (`study.optimize(n_jobs=N)`) Optuna calls `sampler.reseed_rng()`,
which reseeds from OS entropy, so parallel workers differ and the seed no longer means anything. Per-worker seed
offsets (worker k uses seed + k) would keep a meaning, but a restarted or requeued worker (SLURM preemption) starts
its stream again and repeats its first proposals, and the points depend on which worker drew which trial.

What this does instead: the trial's number is unique within a study whichever process creates it (the storage
assigns it), so the sampler of trial N is rebuilt with `trial_seed(seed, N)` (numpy's SeedSequence, made to mix
several integers into independent streams) in `before_trial`, before Optuna samples anything for it. Every trial
has its own stream; one process with the same seed proposes the same sequence again; and for the random sampler
(and TPE's random start-up trials) trial N's point does not even depend on how many workers ran the study (a
model-based proposal still depends on which trials had finished, as in any parallel search). CmaEsSampler already
mixes the trial number into its own optimizer's seed; this extends the same idea to every sampler. `seed: null`
keeps Optuna's behaviour: each process seeds itself from OS entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number` in a study seeded `seed`: distinct streams for distinct trials."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Delegates to `build(trial_seed(seed, N))` for trial N; a process runs one trial at a time, so the sampler
    of the trial in hand is kept and rebuilt when a call names another trial."""

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self._build = build
        self._seed = seed
        self._number: int | None = None
        self._sampler = build(seed)

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if trial.number != self._number:
            self._number = trial.number
            self._sampler = self._build(trial_seed(self._seed, trial.number))
        return self._sampler

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()
