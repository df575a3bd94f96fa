"""The `taxifare` command line. Heavy libraries (pandas, pyarrow, TensorFlow) are imported inside the
commands that use them, so `taxifare --help` answers at once."""

from taxifare.cli.main import app, main

__all__ = ["app", "main"]
