"""Injected failures for the control plane (CONTRACT.md §8): what the next request suffers.

``Chaos`` holds the settings posted to ``/_meisa/chaos/`` and answers, per request, with one
:class:`Verdict`: pass, fail with a status (nothing changes), or drop the connection (after applying
the change half of the time), plus a latency to add. Thread-safe; the randomness is injectable.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Chaos", "ChaosSettings", "Verdict"]

_FAILURE_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class ChaosSettings:
    fail_next: int = 0
    status: int = 503
    error_rate: float = 0.0
    statuses: tuple[int, ...] = (500, 502, 503)
    drop_rate: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ChaosSettings:
        """Settings from the posted JSON; ``ValueError`` naming the field when one is wrong."""
        known = {"fail_next", "status", "error_rate", "statuses", "drop_rate", "latency_ms"}
        for name in data:
            if name not in known:
                raise ValueError(f"{name}: unknown setting (known: {', '.join(sorted(known))})")
        fail_next = data.get("fail_next", 0)
        if not isinstance(fail_next, int) or isinstance(fail_next, bool) or fail_next < 0:
            raise ValueError("fail_next: must be a non-negative integer")
        status = _status("status", data.get("status", 503))
        statuses = data.get("statuses", [500, 502, 503])
        if not isinstance(statuses, list) or not statuses:
            raise ValueError("statuses: must be a non-empty list of 5xx statuses")
        parsed_statuses = tuple(_status("statuses", s) for s in statuses)
        latency = data.get("latency_ms", [0, 0])
        if (
            not isinstance(latency, list)
            or len(latency) != 2
            or not all(_is_number(v) and v >= 0 for v in latency)
            or latency[0] > latency[1]
        ):
            raise ValueError("latency_ms: must be [low, high] with 0 <= low <= high")
        return cls(
            fail_next=fail_next,
            status=status,
            error_rate=_rate("error_rate", data.get("error_rate", 0.0)),
            statuses=parsed_statuses,
            drop_rate=_rate("drop_rate", data.get("drop_rate", 0.0)),
            latency_ms=(float(latency[0]), float(latency[1])),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "fail_next": self.fail_next,
            "status": self.status,
            "error_rate": self.error_rate,
            "statuses": list(self.statuses),
            "drop_rate": self.drop_rate,
            "latency_ms": list(self.latency_ms),
        }


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rate(name: str, value: object) -> float:
    if not _is_number(value) or not 0 <= value <= 1:  # type: ignore[operator]
        raise ValueError(f"{name}: must be a number between 0 and 1")
    return float(value)  # type: ignore[arg-type]


def _status(name: str, value: object) -> int:
    if value not in _FAILURE_STATUSES or isinstance(value, bool):
        raise ValueError(f"{name}: must be one of {sorted(_FAILURE_STATUSES)}")
    return int(value)  # type: ignore[call-overload, unused-ignore]


@dataclass(frozen=True)
class Verdict:
    """What happens to one request: ``fail_status`` (nothing changes), or ``drop`` (the connection
    breaks, after the change was applied when ``apply_before_drop``), after ``latency`` seconds."""

    latency: float = 0.0
    fail_status: int | None = None
    drop: bool = False
    apply_before_drop: bool = False


@dataclass
class Chaos:
    """The current settings and the per-request decision."""

    rng: random.Random = field(default_factory=random.Random)
    settings: ChaosSettings = field(default_factory=ChaosSettings)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, settings: ChaosSettings) -> None:
        with self._lock:
            self.settings = settings

    def off(self) -> None:
        self.configure(ChaosSettings())

    def verdict(self) -> Verdict:
        with self._lock:
            s = self.settings
            low, high = s.latency_ms
            latency = self.rng.uniform(low, high) / 1000 if high > 0 else 0.0
            if s.fail_next > 0:
                self.settings = ChaosSettings(**{**s.__dict__, "fail_next": s.fail_next - 1})
                return Verdict(latency=latency, fail_status=s.status)
            if s.error_rate and self.rng.random() < s.error_rate:
                return Verdict(latency=latency, fail_status=self.rng.choice(s.statuses))
            if s.drop_rate and self.rng.random() < s.drop_rate:
                return Verdict(
                    latency=latency, drop=True, apply_before_drop=self.rng.random() < 0.5
                )
            return Verdict(latency=latency)
