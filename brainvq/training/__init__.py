"""Training: the two stages, the code-grid cache, callbacks, devices, one train.py command."""
