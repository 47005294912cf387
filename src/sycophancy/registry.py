"""Plug-ins by config kind: a registry per config group, refusing an unknown kind with the known ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sycophancy.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """The plug-ins of one config group (`probe`, `mitigation`) by their `kind`."""

    def __init__(self, group: str, entries: dict[str, T]):
        self.group = group
        self.entries = dict(entries)

    def register(self, kind: str) -> Callable[[type], type]:
        """Class decorator: `<group>.kind=<kind>` uses an instance of the class."""

        def add(cls: type) -> type:
            if kind in self.entries:
                raise ValueError(f"{self.group} kind {kind!r} is already registered")
            self.entries[kind] = cls()
            return cls

        return add

    def kinds(self, where: Callable[[T], bool] = lambda _: True) -> list[str]:
        """The registered kinds whose plug-in passes `where`, sorted."""
        return sorted(kind for kind, entry in self.entries.items() if where(entry))

    def get(self, kind: str | None) -> T:
        """The plug-in of a kind; an unknown kind is a UserError listing the known ones."""
        if kind not in self.entries:
            raise UserError(
                f"{self.group}.kind={kind!r} is not a known {self.group}; choose one of "
                f"{', '.join(self.kinds())} ({self.group}=NAME picks conf/{self.group}/NAME.yaml, "
                f"whose `kind` names the code that runs it)."
            )
        return self.entries[kind]
