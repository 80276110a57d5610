"""New slices: the compiled sampler and what predict.py writes from a run."""
