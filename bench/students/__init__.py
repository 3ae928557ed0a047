"""Students: one module per builder family; each registers in `bench.registries.STUDENTS`."""
