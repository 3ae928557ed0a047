"""The tiny digits search study several sweep tests race workers on (one file text, so they agree on it)."""

from __future__ import annotations


def tiny_study(name: str, sampler: str, seed: int, trials: int) -> str:
    """A 1-epoch projection-head search over lr on 200 digits images: `trials` trials, best re-run on seed 1."""
    return f"""
name: {name}
teacher: effnet-lite0
student: projection
method: scratch
dataset: digits
epochs: 1
data:
  image_size: 64
  student_image_size: 16
  train_limit: 200
  val_limit: 100
  test_limit: 100
hparams:
  batch_size: 32
search:
  lr: {{type: float, low: 1.0e-3, high: 3.0e-2, log: true}}
sampler: {{name: {sampler}, seed: {seed}}}
pruner: none
trials: {trials}
final: {{seeds: [1], top: 1}}
"""
