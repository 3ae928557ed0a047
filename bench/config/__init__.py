"""Grid and study files: their pydantic models, loading and checks."""
