"""Exceptions that the CLI turns into one-line messages and exit codes."""


class TaxifareError(Exception):
    """A failure the user can act on; reported as one line, exit code 1."""

    exit_code = 1


class InputError(TaxifareError):
    """Bad usage or bad input (flags, environment, files); exit code 2."""

    exit_code = 2
