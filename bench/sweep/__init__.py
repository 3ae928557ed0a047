"""Orchestration of sweeps: the Optuna queue, grid enqueue, study search and the worker loop."""
