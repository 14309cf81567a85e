"""Start a JavaScript function worker inside the same kernel sandbox as a Python one.

``python -I -B -m sluice.functions.launch_js WORKDIR NODE [NODE ARGS…]`` (the pool builds the
command): switch core dumps off, restrict this process with Landlock — read the system paths
of :mod:`sluice.functions.sandbox`, the runtime's ``node_modules`` and the worker's own
scripts; execute only the node binary and its dynamic loader; write only WORKDIR; no
signals to processes outside — then ``exec`` node, which inherits all of it. Node's ``vm``
context is not a security boundary (code can reach ``process``); this is what holds when it
does. Without Landlock (an old kernel) node starts anyway and ``SLUICE_LANDLOCK_ABI`` says 0.
"""

from __future__ import annotations

import os
import resource
import struct
import sys

from sluice.functions.sandbox import SYSTEM_READ_PATHS, apply_landlock

__all__ = ["main"]

PT_INTERP = 3


def elf_interpreter(path: str) -> str | None:
    """The dynamic loader an ELF executable names (``PT_INTERP``), or None (static, not ELF).

    The kernel opens it for execution together with the binary, so it needs Landlock's execute
    right too; the shared libraries it then maps need only read.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
                return None
            order = "<" if head[5] == 1 else ">"
            (phoff,) = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            for index in range(phnum):
                f.seek(phoff + index * phentsize)
                kind, _, offset, _, _, size = struct.unpack(order + "IIQQQQ", f.read(40))
                if kind == PT_INTERP:
                    f.seek(offset)
                    return os.path.realpath(f.read(size).rstrip(b"\0").decode())
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


def _node_modules(worker: str) -> list[str]:
    """Every ``node_modules`` above the worker script (Node resolves ``require`` by walking up)."""
    found = []
    directory = os.path.dirname(os.path.realpath(worker))
    while True:
        candidate = os.path.join(directory, "node_modules")
        if os.path.isdir(candidate):
            found.append(candidate)
        parent = os.path.dirname(directory)
        if parent == directory:
            return found
        directory = parent


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        print("usage: python -m sluice.functions.launch_js WORKDIR NODE [NODE ARGS...]", file=sys.stderr)
        sys.exit(2)
    workdir, node, *args = argv
    node = os.path.realpath(node)
    worker = next((a for a in reversed(args) if a.endswith(".js")), "")
    read_roots = [p for p in SYSTEM_READ_PATHS if os.path.exists(p)]
    read_roots += [os.path.dirname(os.path.realpath(worker)), *_node_modules(worker)] if worker else []
    interpreter = elf_interpreter(node)
    exec_roots = [node, *([interpreter] if interpreter else [])]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a V8 abort must not dump the settings to disk
    abi = apply_landlock(read_roots, [os.path.realpath(workdir)], exec_roots)
    os.chdir(workdir)
    env = {**os.environ, "SLUICE_LANDLOCK_ABI": str(abi)}
    os.execve(node, [node, *args], env)


if __name__ == "__main__":
    main(sys.argv[1:])
