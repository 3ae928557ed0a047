"""What the teacher gives a run: its feature pass and on-disk cache, the linear probe and the fine-tune."""
