"""Runs one command and writes its resource usage as JSON: ``python -m bench.launch OUT.json -- CMD...``.

Linux carries a process's peak-RSS record across ``exec``, so a child forked straight from a
large benchmark process would report at least that process's size. This launcher is small;
the command it forks inherits only the launcher's footprint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(argv: list[str]) -> int:
    out, sep, *cmd = argv
    if sep != "--" or not cmd:
        print("usage: python -m bench.launch OUT.json -- CMD...", file=sys.stderr)
        return 2
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"utime": usage.ru_utime, "stime": usage.ru_stime, "maxrss_kib": usage.ru_maxrss}, handle)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
