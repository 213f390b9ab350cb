"""The run lock's refusal names the holder even when the holder has only just taken the lock."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from jepalab.errors import RunBusyError
from jepalab.trainer.lock import LOCK_FILE, RunLock


def test_a_loser_that_reads_the_lock_before_the_winner_writes_it_still_names_the_winner(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the winner holds the lock, its record not yet written

    def write_record_late() -> None:
        time.sleep(0.3)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "train",
                                 "time": time.time()}).encode())

    writer = threading.Thread(target=write_record_late)
    writer.start()
    try:
        with pytest.raises(RunBusyError, match="`jepalab train`"):
            RunLock(tmp_path, "train").acquire()
    finally:
        writer.join()
        os.close(fd)
