"""What the scripts write for people to look at: figures (PNG) of images, metrics and curves."""
