"""A small name -> object registry shared by backbones, tasks and tuning methods.

Names are lower-case and unique; an unknown name raises a KeyError that lists the close matches, so a typo
on the command line says what the user probably meant.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lower-case names to registered objects (classes, factories or specs)."""

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint  # appended to the unknown-name error: how to make a name known (e.g. --import)
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register `obj` under `name`; usable as a call or as a decorator (`@REG.register("x")`)."""

        def _add(item: T) -> T:
            if not name or name != name.lower() or name.strip() != name:
                raise ValueError(f"{self.kind} names must be non-empty and lower-case, got {name!r}")
            if name in self._items and not overwrite:
                raise KeyError(f"{self.kind} {name!r} is already registered; pick another name or pass overwrite=True")
            self._items[name] = item
            return item

        if obj is None:
            return _add
        return _add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            how = f"; {self.hint}" if self.hint else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: {', '.join(sorted(self._items))}{how}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())


Factory = Callable[..., object]
