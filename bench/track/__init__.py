"""Runs to the trackers researchers already use: MLflow and Weights & Biases (offline), one tracked run per row."""
