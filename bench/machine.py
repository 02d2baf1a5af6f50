"""A description of the machine a run used, for the report header."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib import metadata

import torch


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> str:
    """Other tenants' load matters on a shared machine: it is recorded at the start and the end."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine_info() -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = load_average()
    return {
        "date (UTC)": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "CPU": cpu_model(),
        "logical cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "load average at start (1, 5, 15 min)": load,
        "Python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision") or "not installed",
        "torch-pruning": package_version("torch-pruning") or "not installed",
    }
