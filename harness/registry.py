"""One small generic registry, used by every stage (like timm's register_model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Registry(Generic[T]):
    """Maps user-facing names (as written in YAML and on the command line) to objects."""

    kind: str
    _entries: dict[str, T] = field(default_factory=dict)
    _meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name raises."""

        def decorate(obj: T) -> T:
            if name in self._entries and _identity(self._entries[name]) != _identity(obj):
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _identity(obj: Any) -> tuple[str, str] | int:
    """Where ``obj`` was defined: re-importing a module re-registers the same thing, not a duplicate."""
    target = getattr(obj, "fn", obj)
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    return (module, qualname) if module and qualname else id(obj)
