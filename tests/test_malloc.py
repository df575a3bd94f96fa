"""The C heap's arenas (core/malloc.py): the CLI caps them, so that TensorFlow's threads share two."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="arenas are glibc's")

# Six threads each allocate a block from the C heap (over pymalloc's 512 bytes) and hold it until all
# have, then glibc's malloc_info counts the arenas ("<heap nr=").
_COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    {setup}
    barrier, blocks = threading.Barrier(7), []
    def allocate():
        blocks.append(bytearray(1 << 16))
        barrier.wait()
        barrier.wait()
    threads = [threading.Thread(target=allocate) for _ in range(6)]
    for thread in threads:
        thread.start()
    barrier.wait()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile("r") as report:
        handle = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        print(report.read().count("<heap nr="))
    barrier.wait()
    """
)


def _arenas(setup: str, **env: str) -> int:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"} | env
    script = _COUNT_ARENAS.format(setup=setup)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_threads_get_arenas_of_their_own_by_default():
    # What the cap changes: without it, each new thread's first allocation makes an arena.
    assert _arenas("") > 2


def test_the_cli_caps_the_arenas_at_two_before_it_runs_a_command():
    run_cli = "from taxifare.cli.main import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    assert _arenas(run_cli) <= 2


def test_a_users_own_malloc_arena_max_is_left_alone():
    from taxifare.core import malloc

    setup = "from taxifare.core.malloc import use_few_arenas\nuse_few_arenas()"
    assert malloc.ARENAS < 4 <= _arenas(setup, MALLOC_ARENA_MAX="8")
