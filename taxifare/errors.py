"""Exceptions that the CLI turns into one-line messages and exit codes."""


class TaxifareError(Exception):
    """A failure the user can act on; reported as one line, exit code 1."""

    exit_code = 1


class InputError(TaxifareError):
    """Bad usage or bad input (flags, environment, files); exit code 2."""

    exit_code = 2


class Interrupted(TaxifareError):
    """A stop signal (Ctrl-C, or SIGTERM from cron or a scheduler); exit code 128 + the signal number."""

    def __init__(self, signal_number: int, name: str):
        super().__init__(f"interrupted by {name}; rerun the same command to continue where it stopped")
        self.exit_code = 128 + signal_number


def first_line(error: BaseException) -> str:
    """The first line of an exception's text ("" when it has none), for one-line messages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
