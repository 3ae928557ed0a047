"""distill-bench: sweep teachers x students x distillation methods x datasets, keep every run in SQL."""

__version__ = "0.1.0"
