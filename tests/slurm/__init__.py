"""Tests against a live SLURM (tests/support/slurm.py starts it)."""
