"""The libraries' own output: TensorFlow, Keras, absl and gRPC are silent unless --verbose.

TensorFlow's C++ runtime writes some lines straight to file descriptor 2 while its shared libraries load
(absl's "All log messages before absl::InitializeLog() is called are written to STDERR", oneDNN's "custom
operations are on", CPU-feature notices): static initializers log through absl before anything reads
TF_CPP_MIN_LOG_LEVEL, so no setting made from Python silences them, and which ones appear depends on the
CPU and the TensorFlow version. So the first import of TensorFlow (or of Keras, which imports it), in
whatever module or thread it happens, runs with descriptor 2 pointed at a scratch file; afterwards what
taxifare itself wrote there meanwhile (log, error and progress lines, from another thread) is passed on,
and the rest dropped, or all of it shown if the import failed. (A crash that ends the process during the
import takes its last words with it: --verbose shows them.)
"""

from __future__ import annotations

import importlib.abc
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from typing import BinaryIO

_NOISY_PACKAGES = ("tensorflow", "keras")
# What taxifare writes to stderr: log lines (see main._configure_logging), error lines, progress redraws.
_OWN_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ |taxifare: |\r")


def quiet_libraries(verbose: bool) -> None:
    """Silence the libraries unless `verbose`; call before they are imported, which read these once.

    TF_CPP_MIN_LOG_LEVEL=3 drops the C++ lines logged after start-up, of every level (a user's 2 still lets
    errors through); GRPC_VERBOSITY covers the gRPC lines a multi-worker run prints when a peer goes away.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    if verbose:
        return
    os.environ["GRPC_VERBOSITY"] = "NONE"
    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(tensorflow|keras|absl)(\.|$)")
    # google-api-core's notice, at import, that a Python version nears its end of life (a year ahead in
    # versions before 2.44, 90 days from 2.44; Python 3.10's already came).
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core(\.|$)")
    already = any(name in sys.modules for name in _NOISY_PACKAGES)
    if not already and not any(isinstance(finder, _QuietFirstImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFirstImport())


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: gives the first of _NOISY_PACKAGES imported a loader that captures
    descriptor 2 around it, then steps aside."""

    def find_spec(self, name, path, target=None):
        if name not in _NOISY_PACKAGES:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _CapturingLoader(spec.loader)
                return spec
        return None


class _CapturingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__spec__.loader = module.__loader__ = self.loader  # the package's own from now on
        capture = _Capture.start()
        failed = True
        try:
            self.loader.exec_module(module)
            failed = False
        finally:
            if capture is not None:
                capture.end(show_all=failed)


class _Capture:
    """Descriptor 2 pointed at a scratch file until end(); `active` while it is."""

    active: "_Capture | None" = None

    def __init__(self, scratch: BinaryIO):
        self.scratch = scratch
        self.lock = threading.Lock()
        self.sent = 0  # bytes of the scratch file passed on so far
        sys.stderr.flush()
        self.terminal = os.dup(2)
        os.dup2(scratch.fileno(), 2)

    @classmethod
    def start(cls) -> "_Capture | None":
        if sys.stderr is None:
            return None  # started without a stderr: nothing to keep clean
        try:
            scratch = os.fdopen(os.memfd_create("taxifare-stderr"), "w+b") if hasattr(os, "memfd_create") else tempfile.TemporaryFile()
            cls.active = cls(scratch)
        except OSError:
            return None  # nowhere to capture to, or no stderr: the lines are shown rather than the command failing
        return cls.active

    def end(self, show_all: bool) -> None:
        with self.lock:
            sys.stderr.flush()
            self._pass_on(show_all)
            os.dup2(self.terminal, 2)
            os.close(self.terminal)
            self.scratch.close()
            _Capture.active = None

    def pass_on_at_exit(self) -> None:
        """The command is ending while the import goes on in another thread: pass on what taxifare wrote,
        and send Python's own last words (a --debug traceback) to the terminal, while the import's
        lines still go to the scratch file."""
        with self.lock:
            sys.stderr.flush()
            self._pass_on(show_all=False)
            sys.stderr = open(os.dup(self.terminal), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")

    def _pass_on(self, show_all: bool) -> None:
        self.scratch.seek(self.sent)
        text = self.scratch.read()
        if show_all:
            self.sent += len(text)
        else:  # whole lines only, the rest at the next pass (at the end: a progress bar's redraw, drawn again)
            whole = text[: text.rfind(b"\n") + 1]
            self.sent += len(whole)
            text = b"".join(line + b"\n" for line in whole.split(b"\n")[:-1] if _OWN_LINE.match(line))
        with open(self.terminal, "wb", closefd=False) as terminal:
            terminal.write(text)


def pass_on_captured_output() -> None:
    """At the end of a command: what taxifare wrote while an import is still capturing its output."""
    capture = _Capture.active
    if capture is not None:
        capture.pass_on_at_exit()
