"""How each method weighs its loss terms, torch-free (the report never imports torch), and which weighted term
dominates CE at the end of training (a term > 10x CE means CE is effectively off)."""

from __future__ import annotations

from collections.abc import Mapping

DOMINANCE = 10.0  # a weighted term this many times the weighted CE is flagged
TOLERANCE = 1e-3  # relative mismatch of a candidate weighting against the stored total loss

# method -> term -> the hparam that weighs it (alternatives: the one whose weighted sum matches train_loss wins).
# Mirrors each method's term_weights(); tests/report/test_report_caveats.py checks the sum against real runs.
TERM_KNOBS: dict[str, dict[str, tuple[str, ...]]] = {
    "kd": {"kd": ("alpha",)},
    "feature": {"feat": ("beta",)},
    "attention": {"at": ("at_weight", "at_attn_weight")},
    "crd": {"crd": ("crd_weight",)},
    "rkd": {"rkd_dist": ("rkd_distance_weight",), "rkd_angle": ("rkd_angle_weight",)},
    "sp": {"sp": ("sp_weight",)},
    "infonce": {"infonce": ("infonce_weight",)},
    "clip": {"clip": ("clip_weight",), "clip_kl": ("clip_kl_weight",)},
    "tinybert": {"hidden": ("hidden_weight",), "attn": ("attn_weight",), "pred": ("pred_weight",)},
}


def _candidates(method: str, hparams: Mapping[str, object]) -> list[dict[str, float]]:
    """Every weighting of the terms this method and hparams allow (one, unless a term has alternatives)."""
    if method == "kd":
        alpha = float(hparams.get("alpha", 0.9))  # type: ignore[arg-type]
        return [{"ce": 1.0 - alpha, "kd": alpha}]
    if method == "combined":
        return _combined(hparams)
    weightings: list[dict[str, float]] = [{"ce": 1.0}]
    for term, knobs in TERM_KNOBS.get(method, {}).items():
        options = [float(hparams[k]) for k in knobs if k in hparams] or [1.0]  # type: ignore[arg-type]
        weightings = [{**w, term: option} for w in weightings for option in options]
    return weightings


def _combined(hparams: Mapping[str, object]) -> list[dict[str, float]]:
    """`combined`: CE at ce_weight; each part's non-CE terms at its combine weight (kd's term at 1, not alpha)."""
    weightings: list[dict[str, float]] = [{"ce": float(hparams.get("ce_weight", 1.0))}]  # type: ignore[arg-type]
    for item in str(hparams.get("combine", "")).split(","):
        name, _, weight = item.strip().partition(":")
        scale = float(weight) if weight else 1.0
        parts = [{"kd": 1.0}] if name == "kd" else [{t: w for t, w in c.items() if t != "ce"}
                                                    for c in _candidates(name, hparams)]
        weightings = [{**w, **{t: scale * v for t, v in part.items()}} for w in weightings for part in parts]
    return weightings


def term_weights(method: str, hparams: Mapping[str, object], terms: Mapping[str, float],
                 train_loss: float | None = None) -> dict[str, float] | None:
    """The weights of the stored terms (the candidate whose weighted sum matches train_loss); None if unknown."""
    fits = [w for w in _candidates(method, hparams) if set(terms) <= set(w)]
    if train_loss is not None and len(fits) > 1:
        error = lambda w: abs(sum(w[t] * v for t, v in terms.items()) - train_loss)  # noqa: E731
        fits = sorted(fits, key=error)[:1]
    return fits[0] if fits else None


def ce_ratios(method: str, hparams: Mapping[str, object], terms: Mapping[str, float],
              train_loss: float | None = None) -> dict[str, float]:
    """term -> weighted term / weighted CE for every non-CE term (inf when CE weighs 0); {} without CE."""
    weights = term_weights(method, hparams, terms, train_loss)
    if weights is None or "ce" not in terms:
        return {}
    ce = abs(weights["ce"] * float(terms["ce"]))
    ratios = {}
    for term, value in terms.items():
        if term != "ce":
            weighted = abs(weights[term] * float(value))
            ratios[term] = weighted / ce if ce > 0 else (float("inf") if weighted > 0 else 0.0)
    return ratios
