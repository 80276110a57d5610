"""The benchmark.py subcommands, one module each, over one harness."""
