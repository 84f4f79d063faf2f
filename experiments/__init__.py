"""The experiments behind design choices (each prints its tables). Run from the repository root:
python -m experiments.NAME."""
