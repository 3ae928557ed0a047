"""Dataset splits, image arrays to tensors, and the decoded-image cache (the data every run reads)."""
