"""Teachers: one module per family; each registers named frozen encoders in `bench.core.registries.TEACHERS`."""
