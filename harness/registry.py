"""A small name -> object registry: decorator for built-ins, entry points for third parties.

    STRATEGIES = Registry("strategy", entry_point_group="harness.strategies")
    @STRATEGIES.register("lora")
    class LoRA: ...
    STRATEGIES.get("lora")

`conform`, when given, sees every object as it is registered (decorator or entry point) and returns
what is stored, or raises: the strategy registry checks the contract there (strategies/base.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None, conform: Callable[[T], T] | None = None):
        self.kind = kind
        self.group = entry_point_group
        self.conform = conform
        self._items: dict[str, T] = {}

    def register(self, name: str):
        if name != name.lower():
            raise ValueError(f"{self.kind} names are lower case: {name!r}")

        def add(obj: T) -> T:
            if self.conform is not None:
                obj = self.conform(obj)
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name]!r}")
            self._items[name] = obj
            return obj

        return add

    def _load_entry_points(self) -> None:
        """Register entry points not seen yet (a package installed after start-up is found too)."""
        if self.group:
            for ep in entry_points(group=self.group):
                if ep.name not in self._items:
                    self.register(ep.name)(ep.load())

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_entry_points()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")
        return self._items[name]
