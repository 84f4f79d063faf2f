"""The ``wfb`` command line."""
