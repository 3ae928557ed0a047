"""Reports read the database into pandas and never import torch: tables, statistics, plots and writers."""
