"""The networks: the VQ-VAE (one or two levels), the PixelCNN priors, the keras-io baseline,
and `build`, which makes them from a run's hyperparameters."""
