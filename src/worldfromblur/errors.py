"""The error a user can act on.

Anything raised as :class:`WfbError` is reported by the ``wfb`` command as one line, ``wfb: error: <message>``, with
a non-zero exit and no traceback. Its message names the file or argument at fault and what to do about it.
"""


class WfbError(Exception):
    """A problem with the user's input, files or options (not a bug in the package)."""
