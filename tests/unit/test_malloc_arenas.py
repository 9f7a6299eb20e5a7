"""The worker caps glibc's malloc arenas (AIRLOCK_WORKER_MALLOC_ARENAS): its threads then share a few heaps."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from engine.runtime.worker import limit_malloc_arenas

# Start threads that each allocate while the others do, then count the heaps glibc reports (malloc_info).
_PROBE = """
import ctypes, ctypes.util, sys, tempfile, threading
from engine.runtime.worker import limit_malloc_arenas
limit_malloc_arenas(int(sys.argv[1]))
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    keep = [bytearray(4096) for _ in range(2000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    f = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(f)); libc.fclose(ctypes.c_void_p(f))
    print(open(out.name).read().count("<heap nr="))
"""


def _heaps(arenas: int) -> int:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(arenas)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc"
                    or "MALLOC_ARENA_MAX" in os.environ, reason="glibc's malloc, not capped from outside")
def test_a_capped_worker_keeps_its_threads_on_few_heaps() -> None:
    assert limit_malloc_arenas(0) is False  # 0 leaves glibc's default
    capped, default = _heaps(2), _heaps(0)
    assert capped <= 2 < default  # glibc's default: up to 8 per core, one per thread here
