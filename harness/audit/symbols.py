"""The symbolic values of a pickle walk: what a stack slot holds when nothing is resolved or
called (a reference to a global, the result of a call, a value the walk cannot see into, a
dict built opcode by opcode), and how they are described in findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from persistbench.audit.budget import BudgetExceeded
from persistbench.audit.opcodes import Large

SCAN_DEPTH = 4  # how deep a value is searched for code shipped in the file
SCAN_CONTAINERS = 4096  # containers one scan opens at most: a bounded cost per opcode


@dataclass(eq=False)
class Ref:
    """A global the unpickler imports, name already resolved."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        return self.module, self.name


@dataclass(eq=False)
class Built:
    """What the unpickler gets by calling `func`; `shipped` if it holds code from the file.
    Arguments are kept only where a later check needs them (dtypes, reviewed shapes)."""

    func: Any
    args: Any = None
    state: Any = None
    shipped: bool = False
    built: bool = False
    cls: Any = None  # the class instantiated: `func`, or the class given to a reconstructor
    module: bool = False  # a module object (cloudpickle's subimport): its globals, not data
    items: SymDict | None = None  # what SETITEMS put in it (a dict subclass)

    def __post_init__(self):
        if self.cls is None:
            self.cls = self.func

    @property
    def of(self) -> tuple[str, str] | None:
        """(module, name) of the class made, when it is a named global."""
        return self.cls.key if isinstance(self.cls, Ref) else None

    def __str__(self) -> str:
        return f"{describe(self.func)}(…)"


class Opaque:
    """A value the walk does not model (a persistent id, an extension code)."""

    def __str__(self) -> str:
        return "<opaque>"


class SymDict:
    """A dict with possibly unhashable symbolic keys, kept as pairs (last one wins)."""

    def __init__(self, pairs: list | None = None):
        self.pairs = pairs or []

    def get(self, key: str, default=None):
        for k, v in reversed(self.pairs):
            if isinstance(k, str) and k == key:
                return v
        return default

    def duplicated(self) -> bool:
        keys = [k for k, _ in self.pairs if isinstance(k, str)]
        return len(keys) != len(set(keys))


def describe(value: Any) -> str:
    if isinstance(value, Ref | Built | Opaque | Large):
        return str(value)
    return type(value).__name__


def shipped_in(value: Any) -> bool:
    """Whether code shipped in the file is reachable in `value` (a few levels deep).

    Each container is looked into once: a file whose lists hold the same list 64 times,
    four levels down, made every call scan 64**3 slots (a 2.7 kB pickle kept the audit busy
    for minutes); memo references share containers, so visiting each once bounds the scan
    by the number of containers the file built."""
    seen: set[int] = set()
    level = [value]
    for _ in range(SCAN_DEPTH + 1):
        below = []
        for item in level:
            if isinstance(item, Built):
                if item.shipped:
                    return True
            elif isinstance(item, tuple | list | SymDict) and id(item) not in seen:
                if len(seen) >= SCAN_CONTAINERS:
                    raise BudgetExceeded(f"an argument too large to scan for shipped code "
                                         f"(over {SCAN_CONTAINERS:,} containers)")
                seen.add(id(item))
                if isinstance(item, SymDict):
                    below += [part for pair in item.pairs[:64] for part in pair]
                else:
                    below += item[:64]
        level = below
    return False
