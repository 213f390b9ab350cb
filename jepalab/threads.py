"""CPU thread settings the ``jepalab`` command applies before torch is imported.

Why: torch's OpenMP threads busy-wait ("spin") between parallel regions by default. On a machine
whose cores are shared with other work, spinning threads fight for the same cores, and two
threads ran 10-40x slower than one. A passive wait policy (threads sleep when idle) removes that
cliff at no measurable cost on an idle machine, and a thread count no larger than the CPUs this
process may actually use (its affinity mask and container CPU quota, which torch's own default
ignores) avoids oversubscription. Both must be in the environment before the OpenMP runtime
loads, i.e. before ``import torch``, which is why the CLI sets them first.

Precedence for the thread count: the ``--threads`` flag, then ``JEPALAB_THREADS``, then a
user-set ``OMP_NUM_THREADS``, then the number of usable CPUs. ``OMP_WAIT_POLICY`` is left alone
when the user set it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from jepalab.errors import ConfigError

THREADS_ENV = "JEPALAB_THREADS"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _parse(value: str, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{where}={value!r} must be a whole number of threads >= 1, e.g. {where}=4.")
    return n


def configure_threads(flag: int | None = None) -> int | None:
    """Set ``OMP_WAIT_POLICY`` (PASSIVE unless set) and the thread count; return the count
    (``None``: left as it was, to the user's ``OMP_NUM_THREADS`` or to the caller's torch).

    The CLI calls it twice: first thing, with no flag, so that the defaults are in the
    environment before any module imports torch; then with ``--threads`` if given, which is also
    applied to the already imported torch. When torch was imported before the first call (jepalab
    run from Python), only an explicit count (flag or ``JEPALAB_THREADS``) changes it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if flag is not None:
        if flag < 1:
            raise ConfigError(f"--threads {flag}: give a whole number of threads >= 1, e.g. --threads 4.")
        n = flag
    elif os.environ.get(THREADS_ENV):
        n = _parse(os.environ[THREADS_ENV], THREADS_ENV)
    elif os.environ.get("OMP_NUM_THREADS"):  # the user's own OpenMP setting (may be a list: "4,2")
        return None
    elif "torch" in sys.modules:  # called from Python that already chose (e.g. a notebook): keep it
        return None
    else:
        n = usable_cpus()
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:  # too late for the environment: tell torch directly
        sys.modules["torch"].set_num_threads(n)
    return n

THREADS_HELP = (f"CPU threads for torch (default: the CPUs this process may use; or set {THREADS_ENV}=N; "
                "a user-set OMP_NUM_THREADS is respected). Idle threads sleep (OMP_WAIT_POLICY=PASSIVE "
                "unless set), so a busy machine does not slow training down by 10x")


def add_threads_argument(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    """``--threads N`` on the main parser (``top_level``) or on a sub-command; both fill
    ``args.cpu_threads``, the sub-command's only when given (so it does not reset the other)."""
    parser.add_argument("--threads", dest="cpu_threads", type=int, metavar="N", help=THREADS_HELP,
                        default=None if top_level else argparse.SUPPRESS)
