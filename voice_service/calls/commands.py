"""The commands a live call accepts from outside its engine, and the interface of a handler that takes them.

The conversation engine (conversation/engine.py, `CallSession`) applies them in order with the call's other
events (see conversation/control.py for what each does); live control (calls/control.py) delivers them from the
API, on whichever instance the call's media is. They live here, below both, so that the calls domain can route
them without knowing the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from msgspec import Struct

__all__ = ["Command", "Controllable", "EndCall", "Say", "Transfer", "controllable"]


class EndCall(Struct, frozen=True):
    reason: str = "ended_by_api"


class Say(Struct, frozen=True):
    text: str
    interrupt: bool = True


class Transfer(Struct, frozen=True):
    to: str  # E.164


Command = EndCall | Say | Transfer


@runtime_checkable
class Controllable(Protocol):
    """A session handler that takes commands and observers (the conversation engine's CallSession)."""

    @property
    def accepting_commands(self) -> bool: ...

    def command(self, command: Command) -> bool:
        """Queue `command`; False when the call is already ending (nothing will happen)."""
        ...

    def observe(self, observer: Any) -> Callable[[], None]:
        """Watch the call's text events (a conversation.control.CallObserver); returns the remover."""
        ...


def controllable(handler: object) -> Controllable | None:
    """The session's handler if it takes commands and observers (the conversation engine), else None."""
    return handler if isinstance(handler, Controllable) else None
