"""Slices from PNG and NIfTI data, the demo, augmentation, covariates and the input pipeline."""
