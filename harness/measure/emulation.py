"""Whether this interpreter runs under a CPU emulator, whose timings are not the CPU's.

qemu's user mode (what `docker run --platform linux/arm64` uses on an x86_64 host through
binfmt, and what `persistbench portability` uses for arm64 and s390x) makes `uname` report the
emulated architecture but passes the host's `/proc/cpuinfo` through: an aarch64 interpreter
that reads an Intel CPU's description is being emulated. Seen here with qemu 7.2 for aarch64
and s390x guests. A machine whose fingerprint says so is kept out of every cross-machine
ratio. Only this standard library is imported: a tree's interpreter can run it too.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
X86_VENDORS = ("GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls")


def cpu_family(cpuinfo: str) -> str | None:
    """The family of the CPU `/proc/cpuinfo` describes: x86, arm, s390 or power."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    vendor = fields.get("vendor_id", "")
    if vendor in X86_VENDORS:
        return "x86"
    if vendor.startswith("IBM/S390"):
        return "s390"
    if "cpu implementer" in fields:
        return "arm"
    if fields.get("cpu", "").upper().startswith("POWER"):
        return "power"
    return None


def machine_family(machine: str) -> str | None:
    """The family of an interpreter's `platform.machine()`."""
    name = machine.lower()
    if name in ("x86_64", "amd64", "i386", "i486", "i586", "i686", "x86"):
        return "x86"
    for prefix, family in (("aarch64", "arm"), ("arm", "arm"), ("s390", "s390"),
                           ("ppc", "power")):
        if name.startswith(prefix):
            return family
    return None


def emulation(machine: str | None = None, cpuinfo: str | None = None) -> str | None:
    """How this interpreter is emulated ("aarch64 code on an x86 CPU, user-mode emulation"),
    or None when it runs on a CPU of its own architecture (or the system does not say)."""
    machine = machine or platform.machine()
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return None
    host, guest = cpu_family(cpuinfo), machine_family(machine)
    if host and guest and host != guest:
        return f"{machine} code on an {host} CPU (user-mode emulation, e.g. qemu)"
    return None
