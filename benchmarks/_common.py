"""What the benchmark scripts share."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.

    VmHWM belongs to the address space, which ``exec`` replaces; ``ru_maxrss`` is kept
    across ``exec`` on Linux, so in a child of a large parent it reports the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
