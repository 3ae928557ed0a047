"""`bench plan`: a dry run of a grid or study, with its cost model and throughputs."""
