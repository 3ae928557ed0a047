"""The results store: typed SQLAlchemy models, sessions, migrations, the database lock and read-only SQL."""
