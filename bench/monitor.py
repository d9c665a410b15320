"""CPU and memory of the processes under test, from psutil.

CPU is the change of a process's CPU time over a window divided by the window's wall
time: 100 % is one core busy. Peak memory is sampled, since the kernel keeps no peak RSS
that includes a process's children.
"""

from __future__ import annotations

import contextlib
import threading

import psutil

RSS_PERIOD = 0.1
"""Seconds between two memory samples."""


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its reaped children have used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def rss_bytes(process: psutil.Process) -> int:
    """RSS of a process and its children; raises psutil.Error once the process is gone."""
    rss = int(process.memory_info().rss)
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child may exit meanwhile
            rss += int(child.memory_info().rss)
    return rss


class PeakRss:
    """Samples the RSS of a process and its children every 100 ms; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self.peak_bytes = 0

    def start(self) -> None:
        """Start sampling in a thread."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = rss_bytes(self._process)
            except psutil.Error:  # it exited: the peak is what was seen
                return
            self.peak_bytes = max(self.peak_bytes, rss)
            self._stop.wait(RSS_PERIOD)

    def stop(self) -> None:
        """Stop sampling; safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
