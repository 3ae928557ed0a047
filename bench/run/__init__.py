"""One run: a spec in, its result record out (student, method, teacher outputs, training)."""
