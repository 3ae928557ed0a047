"""The `bench` command line: one module per command group; each command delegates to the package that owns it."""
