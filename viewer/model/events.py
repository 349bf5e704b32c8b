"""A tiny observer pattern without Qt (napari-style ``obj.events.<name>.connect(callback)``).

The state model must stay importable and testable without a display, so it cannot use Qt signals.  Callbacks
receive one :class:`Event` (``type``, ``source``, ``value``).  Bound methods are held weakly, so a widget that
forgot to disconnect does not keep itself alive through the model; plain functions and lambdas are held
strongly.  Widgets should still disconnect when they are torn down.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Callback = Callable[["Event"], Any]


@dataclass(frozen=True)
class Event:
    """What happened: ``type`` (the emitter's name), ``source`` (the object that changed), ``value`` (new value)."""

    type: str
    source: Any
    value: Any = None


class EventEmitter:
    """One named event: ``connect`` callbacks, ``emit`` values, ``blocked()`` to silence it temporarily."""

    def __init__(self, source: Any, name: str):
        self.source = source
        self.name = name
        self._callbacks: list[Callable[[], Callback | None]] = []
        self._blocked = 0

    def connect(self, callback: Callback) -> Callback:
        """Call ``callback(event)`` on every emit; returns the callback so it can be used as a decorator."""
        if getattr(callback, "__self__", None) is not None and hasattr(callback, "__func__"):
            ref: Callable[[], Callback | None] = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        else:
            ref = _StrongRef(callback)
        if not any(existing() == callback for existing in self._callbacks):
            self._callbacks.append(ref)
        return callback

    def disconnect(self, callback: Callback | None = None) -> None:
        """Remove ``callback`` (all callbacks when None); unknown callbacks are ignored."""
        if callback is None:
            self._callbacks.clear()
        else:
            self._callbacks = [ref for ref in self._callbacks if ref() is not None and ref() != callback]

    @property
    def callbacks(self) -> list[Callback]:
        return [cb for cb in (ref() for ref in self._callbacks) if cb is not None]

    def emit(self, value: Any = None) -> None:
        if self._blocked:
            return
        event = Event(self.name, self.source, value)
        dead = False
        for ref in list(self._callbacks):
            callback = ref()
            if callback is None:
                dead = True
                continue
            callback(event)
        if dead:
            self._callbacks = [ref for ref in self._callbacks if ref() is not None]

    __call__ = emit

    @contextmanager
    def blocked(self) -> Iterator[None]:
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1


class _StrongRef:
    __slots__ = ("_obj",)

    def __init__(self, obj: Callback):
        self._obj = obj

    def __call__(self) -> Callback:
        return self._obj


class EmitterGroup:
    """The ``events`` attribute of a model object: one :class:`EventEmitter` per name."""

    def __init__(self, source: Any, names: tuple[str, ...] | list[str]):
        self._source = source
        self._emitters: dict[str, EventEmitter] = {}
        self.add(*names)

    def add(self, *names: str) -> None:
        for name in names:
            if name not in self._emitters:
                self._emitters[name] = EventEmitter(self._source, name)

    def __getattr__(self, name: str) -> EventEmitter:
        emitters = self.__dict__.get("_emitters", {})
        if name in emitters:
            return emitters[name]
        raise AttributeError(f"no event named {name!r}; known: {sorted(emitters)}")

    def __iter__(self) -> Iterator[EventEmitter]:
        return iter(self._emitters.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._emitters)

    def connect(self, callback: Callback) -> Callback:
        """Connect ``callback`` to every emitter of the group (it can tell them apart by ``event.type``)."""
        for emitter in self._emitters.values():
            emitter.connect(callback)
        return callback

    def disconnect(self, callback: Callback | None = None) -> None:
        """Remove ``callback`` from every emitter of the group (all callbacks when None)."""
        for emitter in self._emitters.values():
            emitter.disconnect(callback)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        for emitter in self._emitters.values():
            emitter._blocked += 1
        try:
            yield
        finally:
            for emitter in self._emitters.values():
                emitter._blocked -= 1
