"""The deployable model of a run (images in, outputs out) and its measured inference cost."""
