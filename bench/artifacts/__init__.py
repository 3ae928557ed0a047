"""Trained students that outlive their run: the artifact store, reloading and re-scoring, export."""
