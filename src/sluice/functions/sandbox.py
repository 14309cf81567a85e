"""Worker-side isolation, applied before any user code runs (see docs/isolation.md).

Three layers:

1. The parent starts the worker with a minimal environment (nothing of the server's), in a
   private temporary working directory, with only the pipe file descriptors open.
2. Landlock (Linux ≥ 5.13, unprivileged): the kernel lets the worker read only the Python
   installation, sluice's own package and a few system files (TLS roots, resolver, time
   zones), write only its temporary directory, execute nothing, and (ABI ≥ 6) signal no
   process outside itself. Where Landlock is missing this layer is absent; the audit hook
   below still refuses the same paths to Python code.
3. A ``sys.addaudithook`` hook (cannot be removed by Python code) refuses process creation,
   ``os.kill``, ``ctypes`` and opening files outside the allowed roots, with a clear
   ``PermissionError``.

Resource limits: ``RLIMIT_AS`` (memory), ``RLIMIT_CORE`` = 0.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import sysconfig
from collections.abc import Iterable

# Landlock constants (linux/landlock.h).
_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}  # create, add_rule, restrict_self
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_ALL_V1 = (1 << 13) - 1
_FS_REFER = 1 << 13
_FS_TRUNCATE = 1 << 14
_FS_IOCTL_DEV = 1 << 15
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1
_PR_SET_NO_NEW_PRIVS = 38

SYSTEM_READ_PATHS = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/share/zoneinfo",
    "/usr/share/ca-certificates",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/localtime",
    "/etc/services",
    "/etc/protocols",
    "/dev/urandom",
)

BLOCKED_EVENTS = {
    "subprocess.Popen": "start processes",
    "os.system": "start processes",
    "os.exec": "start processes",
    "os.posix_spawn": "start processes",
    "os.spawn": "start processes",
    "os.fork": "fork",
    "os.forkpty": "fork",
    "os.kill": "send signals",
    "os.killpg": "send signals",
    "signal.pthread_kill": "send signals",
    "ctypes.dlopen": "load native libraries",
    "ctypes.dlsym": "load native libraries",
    "ctypes.cdata": "use ctypes",
    "ctypes.call_function": "use ctypes",
}


def python_read_roots() -> list[str]:
    """The Python installation and sluice's own package (never the project or data dirs)."""
    paths = sysconfig.get_paths()
    roots = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        paths["stdlib"],
        paths["platstdlib"],
        paths["purelib"],
        paths["platlib"],
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # the sluice package
    }
    roots.update(p for p in sys.path if p and os.path.isdir(p) and "site-packages" in p)
    return sorted(os.path.realpath(r) for r in roots if r)


def set_memory_limit(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def apply_landlock(read_roots: Iterable[str], write_roots: Iterable[str], exec_roots: Iterable[str] = ()) -> int:
    """Restrict this process with Landlock. Returns the ABI used, or 0 when unavailable.

    ``exec_roots`` may be read and executed (the JavaScript launcher's node binary and the
    libraries its loader maps); nothing else can be executed."""
    import ctypes
    import platform
    import struct

    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    create, add_rule, restrict = numbers
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = int(libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))
    if abi <= 0:
        return 0
    handled = _FS_ALL_V1
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    if abi >= 6:
        attr = struct.pack("=QQQ", handled, 0, _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL)
    else:
        attr = struct.pack("=Q", handled)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = int(libc.syscall(create, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)))
    if ruleset < 0:
        return 0
    file_rights = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
    read_dir = _FS_READ_FILE | _FS_READ_DIR
    write_dir = handled & ~_FS_EXECUTE

    def allow(path: str, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if not os.path.isdir(path):
                rights &= file_rights
            rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
            libc.syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(1), rule, ctypes.c_uint32(0))
        finally:
            os.close(fd)

    for path in read_roots:
        allow(path, read_dir)
    for path in exec_roots:
        allow(path, read_dir | _FS_EXECUTE)
    for path in write_roots:
        allow(path, write_dir)
    allow("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE)
    try:
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return 0
        if int(libc.syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0))) != 0:
            return 0
    finally:
        os.close(ruleset)
    return abi


class AuditGuard:
    """The audit hook: refuses what a function must not do, naming it."""

    def __init__(self, read_roots: Iterable[str], write_roots: Iterable[str]) -> None:
        self.read_roots = tuple(r.rstrip("/") + "/" for r in read_roots)
        self.write_roots = tuple(r.rstrip("/") + "/" for r in write_roots)
        self.exact = frozenset({"/dev/null", "/dev/urandom", *(p for p in SYSTEM_READ_PATHS)})

    def allowed(self, path: str, writing: bool) -> bool:
        real = os.path.realpath(path)
        if real in self.exact:
            return not writing or real == "/dev/null"
        if (real + "/") in self.write_roots:
            return True
        candidate = real + "/" if os.path.isdir(real) else real
        if any(candidate.startswith(root) for root in self.write_roots):
            return True
        if writing:
            return False
        return any(candidate.startswith(root) for root in self.read_roots)

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        what = BLOCKED_EVENTS.get(event)
        if what is not None:
            raise PermissionError(f"sluice functions may not {what} ({event})")
        if event in ("socket.connect", "socket.bind") and args:
            sock = args[0]
            if getattr(sock, "family", None) == socket.AF_UNIX:
                raise PermissionError("sluice functions may not use UNIX sockets (local services are off limits)")
            return
        if event == "open" and args:
            path = args[0]
            if isinstance(path, int) or path is None:
                return
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = any(c in mode for c in "wax+") or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if not self.allowed(str(path), writing):
                raise PermissionError(f"sluice functions may not open {path!r}: outside the function's sandbox")


def isolate(memory_mb: int, workdir: str) -> dict[str, object]:
    """Apply every layer to the current process. Returns what was applied (for diagnostics)."""
    read_roots = [*python_read_roots(), *(_p for _p in SYSTEM_READ_PATHS if os.path.exists(_p))]
    write_roots = [os.path.realpath(workdir)]
    abi = apply_landlock(read_roots, write_roots)
    sys.addaudithook(AuditGuard(read_roots, write_roots))
    set_memory_limit(memory_mb)
    return {"landlock_abi": abi, "memory_mb": memory_mb}
