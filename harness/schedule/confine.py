"""Confinement of a process that loads a file the harness did not write.

Applied by the process to itself, first thing, before it reads the file: from then on the
kernel, not the harness, decides what it may do, so a payload that gets past the static
audit still cannot take effect. Nothing here needs root:

- seccomp-bpf (libseccomp through `pyseccomp`): starting a program (execve, fork, a clone
  that is not a thread), network sockets, and the calls that reach other processes or the
  kernel's guts (ptrace, process_vm_*, io_uring, bpf, mount, namespaces, keyrings) kill the
  process on the spot. A kill, not an error, because a payload cannot catch it and go on to
  forge a clean report: the parent sees SIGSYS. `PROGRAMS` mode (measuring cells that start
  their own interpreter servers) lets execve and fork through, Landlock then limits what
  may be executed to the harness's own interpreter, confined the same way (both survive
  exec), and Unix sockets stay open for the forkserver.
- Landlock: the file system is readable everywhere and writable only in the given folders;
  nothing is executable (but the interpreter, in `PROGRAMS` mode); TCP bind/connect are
  refused (ABI 4), and so are signals and abstract Unix sockets towards processes outside
  the confinement (ABI 6), so the harness itself cannot be killed.
- setrlimit: address space, CPU seconds, size of a written file, no core dumps.

`unavailable()` says in one line why confinement cannot be applied here (not Linux, no
libseccomp, Landlock disabled); callers refuse then unless the user passed `--unconfined`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

LOAD = "load"  # a load of the file and nothing else: no program at all
PROGRAMS = "programs"  # a measuring cell: may start the harness's own interpreter

# Landlock (linux/landlock.h); the syscall numbers are the same on every architecture.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITES = sum(1 << bit for bit in range(4, 13))  # remove/make dir, file, node, socket, link
REFER, TRUNCATE = 1 << 13, 1 << 14
_NET_ALL = (1 << 0) | (1 << 1)  # bind and connect TCP
_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract Unix sockets, signals
_PR_SET_NO_NEW_PRIVS = 38

# Never part of loading a model; in `LOAD` mode starting a program joins them.
_ALWAYS_KILLED = ("ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup",
                  "io_uring_enter", "io_uring_register", "bpf", "mount", "umount2",
                  "unshare", "setns", "pivot_root", "chroot", "keyctl", "add_key",
                  "request_key", "perf_event_open", "userfaultfd", "init_module",
                  "finit_module", "kexec_load", "kexec_file_load", "move_mount", "open_tree",
                  "fsopen", "fsmount", "name_to_handle_at", "open_by_handle_at")
_PROGRAM_CALLS = ("execve", "execveat", "fork", "vfork")
_CLONE_THREAD = 0x00010000


class Unconfinable(Exception):
    """Confinement could not be applied in this process: the text says why."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass(frozen=True)
class Limits:
    """What the confined process may use and where it may write."""

    writable: tuple[str, ...]  # folders (everything under them) and single files
    memory_bytes: int | None = None
    cpu_s: int | None = None
    mode: str = LOAD
    # Programs and sockets fail with EPERM instead of killing the process: for loads whose
    # libraries may try one on their own (loky runs `lscpu` to count cores) and cope
    refuse_quietly: bool = False
    file_bytes: int = 8 << 30


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    if sys.platform != "linux":
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(version))


def unavailable() -> str | None:
    """Why this machine cannot confine a load, in one line; None when it can."""
    if sys.platform != "linux":
        return f"confinement needs Linux (seccomp and Landlock); this is {sys.platform}"
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, RuntimeError) as exc:
        return f"confinement needs libseccomp and the pyseccomp package ({exc})"
    abi = landlock_abi()
    if abi < 1:
        return "confinement needs Landlock, which this kernel lacks or has disabled " \
               "(boot with lsm=...,landlock)"
    return None


def _fs_handled(abi: int) -> int:
    handled = EXECUTE | WRITE_FILE | READ_FILE | READ_DIR | _WRITES
    if abi >= 2:
        handled |= REFER
    if abi >= 3:
        handled |= TRUNCATE
    return handled


def _add_path(libc, ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):  # a file accepts only the rights a file can have
            access &= EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE
        rule = _PathBeneath(access, fd)
        if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise Unconfinable(f"Landlock refused a rule for {path}: "
                               f"{os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def _interpreter_paths() -> list[str]:
    """The interpreter binary and its ELF loader: what `PROGRAMS` mode may execute."""
    binary = os.path.realpath(sys.executable)
    paths = [binary]
    with open(binary, "rb") as fh:
        head = fh.read(4096)
    start = head.find(b"/lib")
    if start >= 0:
        loader = head[start:head.index(b"\0", start)].decode()
        if os.path.exists(loader):
            paths.append(os.path.realpath(loader))
    return paths


def apply_landlock(limits: Limits) -> int:
    """Restrict this process's file system (and, if the kernel can, TCP and signals)."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = landlock_abi()
    if abi < 1:
        raise Unconfinable("Landlock is not available")
    handled = _fs_handled(abi)
    attr = _RulesetAttr(handled, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise Unconfinable(f"Landlock: {os.strerror(ctypes.get_errno())}")
    try:
        _add_path(libc, ruleset, "/", READ_FILE | READ_DIR)
        _add_path(libc, ruleset, "/dev/null", WRITE_FILE | READ_FILE)
        for folder in limits.writable:
            _add_path(libc, ruleset, folder, handled & ~EXECUTE)
        if limits.mode == PROGRAMS:
            for path in _interpreter_paths():
                _add_path(libc, ruleset, path, EXECUTE | READ_FILE)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise Unconfinable("prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise Unconfinable(f"Landlock: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


def apply_seccomp(mode: str, refuse_quietly: bool = False) -> None:
    """Kill the process at any system call a load (or a measuring cell) never makes."""
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # no 32-bit side door
    refuse = sc.ERRNO(errno.EPERM) if refuse_quietly else sc.KILL_PROCESS
    rules = [(sc.KILL_PROCESS, name) for name in _ALWAYS_KILLED]
    if mode == LOAD:
        rules += [(refuse, name) for name in _PROGRAM_CALLS]
    for action, name in rules:
        try:
            flt.add_rule(action, name)
        except (ValueError, OSError, RuntimeError):
            continue  # a call this architecture does not have
    # glibc creates threads with clone3 and falls back to clone, whose flags a filter sees.
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if mode == LOAD:
        flt.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
        flt.add_rule(refuse, "socket")
        flt.add_rule(refuse, "socketpair")
    else:  # Unix sockets only (the forkserver); no network
        flt.add_rule(sc.KILL_PROCESS, "socket", sc.Arg(0, sc.NE, 1))
    flt.load()


def apply_rlimits(limits: Limits) -> None:
    caps = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, limits.file_bytes)]
    if limits.memory_bytes:
        caps.append((resource.RLIMIT_AS, limits.memory_bytes))
    if limits.cpu_s:
        caps.append((resource.RLIMIT_CPU, limits.cpu_s))
    for which, value in caps:
        _, hard = resource.getrlimit(which)
        # CPU: SIGXCPU at the soft cap (the parent names it); SIGKILL a second later
        ceiling = value + 1 if which == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            value, ceiling = min(value, hard), min(ceiling, hard)
        resource.setrlimit(which, (value, ceiling))


def confine(limits: Limits) -> dict:
    """Confine this process for good (there is no way back); what was applied.

    Call it before any thread of one's own is started: Landlock binds the calling thread
    and the threads it starts later, which is every thread a forked or fresh child has.
    """
    reason = unavailable()
    if reason:
        raise Unconfinable(reason)
    apply_rlimits(limits)
    abi = apply_landlock(limits)
    apply_seccomp(limits.mode, limits.refuse_quietly)
    return {"landlock_abi": abi, "seccomp": True, "mode": limits.mode,
            "writable": list(limits.writable), "memory_bytes": limits.memory_bytes,
            "cpu_s": limits.cpu_s}


def writable_paths(*paths: Path | str) -> tuple[str, ...]:
    """Existing folders and files, resolved in this process (Landlock rules name inodes,
    not strings: `/proc/self/...` becomes this process's own entry)."""
    return tuple(sorted({str(Path(p).resolve()) for p in paths if Path(p).exists()}))
