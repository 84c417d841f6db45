"""The one exception type the command line turns into a one-line message and exit code 2."""


class CostModelError(Exception):
    """Bad input a user can act on: a missing file, an unknown name, a shape the model rejects."""
