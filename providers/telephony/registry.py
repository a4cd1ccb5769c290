"""The telephony carriers this process knows. A new carrier is one module (see carrier.py) plus one line here.

The service reads everything about carriers from here: the routes it mounts, the callback URLs of the calls it
places, the media sockets it serves, the settings each carrier reads and how its client is built. Tests register
a carrier of their own with `register` (and take it away with `unregister`) before they build the app.
"""

from __future__ import annotations

from providers.telephony import simulator, twilio, vonage
from providers.telephony.carrier import Carrier, CarrierRoutes

__all__ = ["carrier", "carriers", "names", "register", "route_families", "unregister"]

_carriers: dict[str, Carrier] = {}


def register(new: Carrier) -> Carrier:
    """Add a carrier. Carriers sharing routes must declare the very same CarrierRoutes value (one wire format);
    two different route declarations cannot take the same path segment."""
    if _carriers.get(new.name, new) is not new:
        raise ValueError(f"a telephony carrier named {new.name!r} is already registered")
    for known in _carriers.values():
        if known.routes.segment == new.routes.segment and known.routes is not new.routes:
            raise ValueError(f"/v1/telephony/{new.routes.segment}/ already belongs to carrier {known.name!r}")
    _carriers[new.name] = new
    return new


def unregister(name: str) -> None:
    _carriers.pop(name, None)


def carrier(name: str) -> Carrier:
    try:
        return _carriers[name]
    except KeyError:
        raise ValueError(f"unknown telephony provider {name!r}; known: {', '.join(names())}") from None


def carriers() -> tuple[Carrier, ...]:
    return tuple(_carriers.values())


def names() -> list[str]:
    return sorted(_carriers)


def route_families() -> list[tuple[CarrierRoutes, tuple[Carrier, ...]]]:
    """Each set of routes with the carriers that share it, in registration order (the first one registered owns
    the webhooks that no carrier of the family claims)."""
    families: dict[int, tuple[CarrierRoutes, list[Carrier]]] = {}
    for known in _carriers.values():
        families.setdefault(id(known.routes), (known.routes, []))[1].append(known)
    return [(routes, tuple(members)) for routes, members in families.values()]


register(twilio.CARRIER)
register(vonage.CARRIER)
register(simulator.CARRIER)
