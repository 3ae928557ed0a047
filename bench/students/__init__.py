"""Students: one module per builder family; each registers in `bench.core.registries.STUDENTS`."""
