"""Distillation methods: one module per family; each registers Method subclasses in `bench.core.registries.METHODS`."""
