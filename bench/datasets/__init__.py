"""Datasets: one module per dataset (or layout); each registers a loader in `bench.core.registries.DATASETS`."""
