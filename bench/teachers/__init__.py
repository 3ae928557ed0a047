"""Teachers: one module per family; each registers named frozen encoders in `bench.registries.TEACHERS`."""
