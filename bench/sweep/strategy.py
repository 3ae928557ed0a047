"""A study's sampler and pruner, built from its stored config (Optuna does not store them)."""

from __future__ import annotations

from bench.config.base import CHOICE_FIELDS
from bench.config.study import PrunerModel, StudyModel


def build_sampler(model: StudyModel):  # noqa: ANN201 - an optuna sampler
    """The file's sampler; a seeded one draws trial N from a seed of its own (bench/sweep/seeding.py), so workers of
    one study explore different points and one process repeats its sequence."""
    if model.sampler.seed is None:
        return _sampler(model, None)
    from bench.sweep.seeding import TrialSeededSampler

    return TrialSeededSampler(lambda seed: _sampler(model, seed), model.sampler.seed)


def _sampler(model: StudyModel, seed: int | None):  # noqa: ANN202 - an optuna sampler
    """The file's sampler with this seed; the grid sampler's space is the choice fields with several values and the
    search."""
    import optuna

    if model.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if model.sampler.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if model.sampler.name == "grid":
        space = {f: list(getattr(model, f)) for f in CHOICE_FIELDS if len(getattr(model, f)) > 1}
        space.update({name: list(param.choices or []) for name, param in model.search.items()})
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def build_pruner(model: StudyModel):  # noqa: ANN201 - an optuna pruner
    """The file's pruner: median (the default for one objective), hyperband or none."""
    import optuna

    settings = model.pruner or PrunerModel()
    if model.pruner_name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.n_startup_trials,
                                           n_warmup_steps=settings.n_warmup_steps)
    if model.pruner_name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=model.epochs,
                                              reduction_factor=settings.reduction_factor)
    return optuna.pruners.NopPruner()


def load_with_strategy(name: str, storage, model: StudyModel):  # noqa: ANN001, ANN201
    """Samplers and pruners are not stored by Optuna: every process builds them from the stored config."""
    import optuna

    directions = list(model.objectives.values())
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True,
                                sampler=build_sampler(model), pruner=build_pruner(model))
    if study.metric_names is None:  # optuna-dashboard and the report name the objectives, not "Objective 0"
        study.set_metric_names(list(model.objectives))
    return study
