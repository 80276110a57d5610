"""The run folder: files, atomic saves, state, lock, checks, fingerprints, shipped models."""
