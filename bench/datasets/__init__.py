"""Loaders for datasets kept on disk in their official layouts (registered from bench.data)."""
