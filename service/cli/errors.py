"""Errors the command line reports as one clear line, without a traceback."""


class UserError(Exception):
    """A failure caused by the command's input (bad file, uncovered dates, bad option)."""
