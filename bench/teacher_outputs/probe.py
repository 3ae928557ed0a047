"""Linear probe on frozen teacher features: the teacher's reference accuracy and its KD logits.

Multinomial logistic regression on standardised features (scipy L-BFGS-B; float32 products, float64
parameters), fit along an L2 path from the strongest penalty down, each fit warm-started from the one
before; the L2 strength is chosen on val. By default the train-split logits that KD learns from are
out-of-fold: each stratified fold's logits come from a probe fit on the other folds, so they are as right
(and as unsure) as the probe is on images it did not see, not memorised in-sample predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax
from threadpoolctl import threadpool_limits

WEIGHT_DECAYS = tuple(float(f"{value:.3g}") for value in np.logspace(-1, -6, 10))  # strongest first
OOF_FOLDS = 5
FOLD_SEED = 0
TOLERANCE = 3e-4  # L-BFGS-B gtol (largest gradient entry): fits stop there, warm or cold
PROBE_VERSION = 3  # in the probe's cache key: bump when the fit or its targets change
TARGETS = ("oof", "in-sample")


@dataclass(frozen=True)
class ProbeResult:
    """The chosen L2 strength, val/test accuracy, logits for every split and what the train logits are."""

    weight_decay: float
    val_acc: float
    test_acc: float
    logits: dict[str, torch.Tensor]
    reference: str = "linear-probe"  # or the zero-shot head's description
    head_params: int | None = None  # None: a linear layer on the pooled embedding
    kd_targets: str = "probe-in-sample"  # what logits["train"] is: probe-oof-<K>, probe-in-sample or zero-shot
    head: dict[str, torch.Tensor] | None = None  # the chosen probe (float64 mean, std, weight, bias): its artifact


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=-1) == labels).float().mean())


@dataclass(frozen=True)
class _Probe:
    """Standardisation and linear weights of one fit (float64)."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray  # (dim, classes)
    bias: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.weight + self.bias


def _loss_and_grad(theta: np.ndarray, x: np.ndarray, onehot: np.ndarray, weight_decay: float):
    """Mean cross-entropy + weight_decay * |W|^2 and its gradient (the bias is not penalised).

    The two products with the float32 features run in float32 (half the time of float64, the same fit to
    about 1e-5 in loss); parameters, softmax, loss and gradient stay float64 for the line search.
    """
    dim, classes = x.shape[1], onehot.shape[1]
    weight, bias = theta[: dim * classes].reshape(dim, classes), theta[dim * classes :]
    log_probs = log_softmax((x @ weight.astype(np.float32)).astype(np.float64) + bias, axis=1)
    n = x.shape[0]
    loss = -float((log_probs * onehot).sum()) / n + weight_decay * float((weight * weight).sum())
    residual = (np.exp(log_probs) - onehot) / n
    grad_weight = (x.T @ residual.astype(np.float32)).astype(np.float64) + 2.0 * weight_decay * weight
    return loss, np.concatenate([grad_weight.ravel(), residual.sum(axis=0)])


def _fit_path(features: np.ndarray, labels: np.ndarray, num_classes: int, weight_decays: Sequence[float],
              max_iter: int, tol: float) -> list[_Probe]:
    """One probe per L2 strength, in the given order, each warm-started from the one before."""
    mean = features.mean(axis=0)
    std = features.std(axis=0, ddof=1) + 1e-6 if len(features) > 1 else np.ones(features.shape[1])
    x = ((features - mean) / std).astype(np.float32)
    onehot = np.eye(num_classes)[labels]
    theta = np.zeros(x.shape[1] * num_classes + num_classes)
    probes = []
    for weight_decay in weight_decays:
        theta = minimize(_loss_and_grad, theta, args=(x, onehot, weight_decay), jac=True, method="L-BFGS-B",
                         options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-10}).x
        split = x.shape[1] * num_classes
        probes.append(_Probe(mean, std, theta[:split].reshape(-1, num_classes).copy(), theta[split:].copy()))
    return probes


def stratified_folds(labels: np.ndarray, folds: int, seed: int = FOLD_SEED) -> np.ndarray:
    """Fold id per sample: each class shuffled (seeded) and dealt round-robin, so folds share its count."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = (offset + np.arange(len(members))) % folds
        offset += len(members)  # the next class starts where this one stopped: fold sizes stay even
    return fold_of


def out_of_fold_logits(features: np.ndarray, labels: np.ndarray, num_classes: int, weight_decay: float,
                       folds: int, seed: int = FOLD_SEED, max_iter: int = 200, tol: float = TOLERANCE) -> np.ndarray:
    """Each fold's logits from a probe fit from zero on the other folds (their own standardisation)."""
    fold_of = stratified_folds(labels, folds, seed)
    logits = np.zeros((len(labels), num_classes))
    for fold in range(folds):
        held_out = fold_of == fold
        probe = _fit_path(features[~held_out], labels[~held_out], num_classes, [weight_decay], max_iter, tol)[0]
        logits[held_out] = probe.logits(features[held_out])
    return logits


def _choose(probes: list[_Probe], val_x: np.ndarray, val_y: np.ndarray) -> int:
    """Index of the best val accuracy; ties go to the lower val cross-entropy, then the stronger L2."""
    def score(index: int) -> tuple[float, float, int]:
        logits = probes[index].logits(val_x)
        acc = float((logits.argmax(axis=1) == val_y).mean())
        nll = -float(log_softmax(logits, axis=1)[np.arange(len(val_y)), val_y].mean())
        return (-acc, nll, index)

    return min(range(len(probes)), key=score)


def fit_linear_probe(
    features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], num_classes: int,
    weight_decays: Sequence[float] = WEIGHT_DECAYS, max_iter: int = 200, targets: str = "oof",
    folds: int = OOF_FOLDS, seed: int = FOLD_SEED, tol: float = TOLERANCE,
) -> ProbeResult:
    """The probe on all of train (L2 chosen on val) for val/test; train logits out-of-fold or in-sample.

    BLAS runs on one thread: these products are small, and a threaded BLAS that spins while other
    processes hold the cores was ten times slower on a busy 2-core machine (and one thread is deterministic).
    """
    if targets not in TARGETS:
        raise ValueError(f"targets={targets!r}: expected one of {TARGETS}")
    x = {split: value.double().cpu().numpy() for split, value in features.items()}
    y = {split: value.cpu().numpy().astype(np.int64) for split, value in labels.items()}
    order = sorted(weight_decays, reverse=True)  # strongest first: each warm start is a small step
    with threadpool_limits(limits=1, user_api="blas"):
        probes = _fit_path(x["train"], y["train"], num_classes, order, max_iter, tol)
        chosen = _choose(probes, x["val"], y["val"])
        logits = {split: probes[chosen].logits(value) for split, value in x.items()}
        folds = min(folds, len(y["train"]))  # no fold may be empty
        kind = "probe-in-sample"
        if targets == "oof" and folds >= 2:
            logits["train"] = out_of_fold_logits(x["train"], y["train"], num_classes, order[chosen], folds, seed,
                                                  max_iter, tol)
            kind = f"probe-oof-{folds}"
    tensors = {split: torch.from_numpy(value).float() for split, value in logits.items()}
    probe = probes[chosen]
    head = {name: torch.from_numpy(np.asarray(getattr(probe, name), dtype=np.float64))
            for name in ("mean", "std", "weight", "bias")}
    return ProbeResult(order[chosen], accuracy(tensors["val"], labels["val"]),
                       accuracy(tensors["test"], labels["test"]), tensors, kd_targets=kind, head=head)


def probe_logits(head: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """A kept probe's float32 logits, computed exactly as the fit computed them (float64 numpy, then float32)."""
    probe = _Probe(*(head[name].numpy() for name in ("mean", "std", "weight", "bias")))
    with threadpool_limits(limits=1, user_api="blas"):
        return torch.from_numpy(probe.logits(features.double().cpu().numpy())).float()
