"""Which (model, version)s are live: admitted on their first span, released when idle or to make room.

Idle is measured on the processor's *event clock*, the newest span end time it has seen (any model), not
on the wall clock: live, the two agree (spans end about now); replaying last week's traffic, the event clock
is what moves, so a day of replayed data ages models by a day. And since the clock moves only with applied
data, releases happen at the same point of the journal when it is replayed after a crash. A model is
active when it received data, whatever that data's timestamps (a producer lagging behind others is active
now), so its last activity is the event clock at its latest batch.

>>> life = ModelLifecycle(ModelsConfig(max_models=2, idle_ttl_seconds=60, release_min_idle_seconds=20))
>>> S = 1_000_000_000
>>> life.touch(("a", "1"), 100 * S); life.touch(("b", "1"), 130 * S)
>>> life.admit(("c", "1"), live={("a", "1"), ("b", "1")}, busy={("c", "1")})  # full: release the idlest
(True, ('a', '1'))
>>> life.touch(("a", "1"), 125 * S)  # now both were active within 20 s: the newcomer waits
>>> life.admit(("c", "1"), live={("a", "1"), ("b", "1")}, busy={("c", "1")})
(False, None)
>>> life.touch(("b", "1"), 200 * S)
>>> life.idle()  # a, not seen since 100 s, is 100 s behind the clock
[('a', '1')]
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

Key = tuple[str, str]
NS = 1_000_000_000
WHEN_FULL = ("release_idlest", "refuse")


@dataclass(frozen=True)
class ModelsConfig:
    """YAML ``models``: how many (model, version)s are kept live, and when one is released."""

    max_models: int = 1_000
    """(model, version)s kept live (memory, exported series). Was ``limits.max_models``."""
    idle_ttl_seconds: float = 3 * 86_400.0
    """A (model, version) without data for this long (event time) is released: its windows are archived, its
    memory and exported series freed. A later span starts it again, with its baseline or pinned reference."""
    when_full: str = "release_idlest"
    """A new (model, version) while ``max_models`` are live: ``release_idlest`` releases the one idle longest
    (counted, logged); ``refuse`` rejects the new one's spans (``too_many_models``)."""
    release_min_idle_seconds: float = 900.0
    """``release_idlest`` releases only a model idle at least this long (event time; default: the default
    horizon): a burst of new names (a bug that puts a request id in ``ml.model.version``) is refused instead of
    evicting the models in use."""
    pinned_reference_ttl_seconds: float = 30 * 86_400.0
    """A released version's pinned reference stays on disk this long (event time) for its return, then goes."""


class ModelLifecycle:
    """The event clock, when each live (model, version) last received data, and recent releases."""

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.clock_ns = 0
        """The newest span end time applied, of any model."""
        self.last_active: dict[Key, int] = {}
        """Live keys: the event clock when each last received data."""
        self.released: dict[Key, int] = {}
        """Released keys: the event clock at release (their pinned references expire from it)."""
        self._swept_ns = 0

    def admit(self, key: Key, live: Collection[Key], busy: Collection[Key]) -> tuple[bool, Key | None]:
        """May ``key`` become live, and which live key must be released first (None: none). ``busy`` are keys
        the request being applied carries: they are not released for it."""
        if key in live or len(live) < self.config.max_models:
            return True, None
        if self.config.when_full == "refuse":
            return False, None
        candidates = [k for k in live if k not in busy]
        if not candidates:
            return False, None
        idlest = min(candidates, key=lambda k: self.last_active.get(k, 0))
        if self.clock_ns - self.last_active.get(idlest, 0) < self.config.release_min_idle_seconds * NS:
            return False, None
        return True, idlest

    def advance(self, event_ns: int) -> None:
        """A request carries spans ending at ``event_ns``: move the clock before deciding on admissions (spans
        further ahead of the processor's clock than limits.max_clock_skew_seconds never get here)."""
        self.clock_ns = max(self.clock_ns, event_ns)

    def touch(self, key: Key, newest_event_ns: int) -> None:
        """``key`` received data; ``newest_event_ns`` is its newest span end time."""
        self.advance(newest_event_ns)
        self.last_active[key] = self.clock_ns
        self.released.pop(key, None)

    def sweep_due(self, interval_ns: int) -> bool:
        """True once per ``interval_ns`` of event time: look for idle keys then (cheap, but not per request)."""
        if self.clock_ns - self._swept_ns < interval_ns:
            return False
        self._swept_ns = self.clock_ns
        return True

    def idle(self) -> list[Key]:
        ttl_ns = self.config.idle_ttl_seconds * NS
        return [k for k, t in self.last_active.items() if self.clock_ns - t > ttl_ns]

    def release(self, key: Key) -> None:
        self.last_active.pop(key, None)
        self.released[key] = self.clock_ns

    def expired_references(self) -> list[Key]:
        """Released keys whose pinned reference is past ``pinned_reference_ttl_seconds``; forgotten here."""
        ttl_ns = self.config.pinned_reference_ttl_seconds * NS
        gone = [k for k, t in self.released.items() if self.clock_ns - t > ttl_ns]
        for k in gone:
            del self.released[k]
        return gone

    def to_state(self) -> dict:
        return {"clock_ns": self.clock_ns, "swept_ns": self._swept_ns,
                "last_active": [[m, v, t] for (m, v), t in self.last_active.items()],
                "released": [[m, v, t] for (m, v), t in self.released.items()]}

    def restore(self, state: dict) -> None:
        self.clock_ns = state["clock_ns"]
        self._swept_ns = state["swept_ns"]
        self.last_active = {(m, v): t for m, v, t in state["last_active"]}
        self.released = {(m, v): t for m, v, t in state["released"]}
