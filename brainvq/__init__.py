"""The VQ-VAE + PixelCNN brain-slice pipeline behind train.py, predict.py, similarity.py and
benchmark.py (the public faces are dataset.py, modules.py and hyperparameters.py)."""
