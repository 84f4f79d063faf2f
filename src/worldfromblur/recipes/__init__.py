"""Shipped recipes for ``wfb train-model`` (YAML files; see :mod:`worldfromblur.training.recipe`)."""
