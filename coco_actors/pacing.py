"""Request pacing per mint: a token bucket before each request, and the wait after a 429.

A mint limits requests per client address, so the pacer is per mint *per process*:
every :class:`~coco_actors.mint_client.MintClient` of one mint URL (the Supervisor's,
the Watcher's, a receive's) takes its turn from the same :class:`MintPacer`, found in
:data:`PACERS`. Its methods are called on whatever thread makes the request (an
operation actor, a watcher link, a caller of ``coco.mints.add``) and only block that
thread; the state they share is behind one lock.

After a 429 the mint did not process the request: it is sent again, never compensated.
The pause honours the mint's ``Retry-After`` (seconds or an HTTP date, never sooner),
else a capped exponential backoff with jitter, and holds *every* request to that mint
until it ends. Past ``max_wait`` seconds of being limited the caller gets
:class:`~coco_actors.errors.RateLimitedError` (raised by the client).

Clocks, sleep and randomness are injected, so the tests run without waiting.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from coco_actors.errors import InvalidInputError

#: Default requests per second to a mint that is not on this machine (Nutshell's own
#: default global limit is 60 a minute per address).
DEFAULT_RATE = 1.0
#: Requests that may go at once after a quiet spell.
DEFAULT_BURST = 20
#: Seconds of 429s after which a request gives up with RateLimitedError.
DEFAULT_MAX_WAIT = 120.0
#: First backoff pause without a Retry-After (seconds), doubled per 429, capped.
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 30.0


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """How requests to a mint are paced; one config for every mint of the process.

    ``rate`` requests per second with bursts of ``burst`` (``rate`` 0: no bucket);
    a loopback mint (127.0.0.1, ::1, localhost) is paced only with ``loopback``. The
    429 handling (``max_wait``, ``backoff_base``, ``backoff_cap``) applies to every mint.
    """

    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    loopback: bool = False
    max_wait: float = DEFAULT_MAX_WAIT
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP

    def __post_init__(self) -> None:
        if not self.rate >= 0 or self.rate == float("inf"):
            raise InvalidInputError(f"pacing rate must be a finite number >= 0, got {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise InvalidInputError(f"pacing burst must be an integer >= 1, got {self.burst!r}")
        if not self.max_wait >= 0:
            raise InvalidInputError(f"max_wait must be >= 0, got {self.max_wait!r}")
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise InvalidInputError("backoff needs 0 < backoff_base <= backoff_cap")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved. :meth:`reserve` always takes a
    token, going into debt when there is none: concurrent callers queue in order, each
    told how long to wait. Not thread-safe on its own (the pacer holds its lock)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def reserve(self, now: float) -> float:
        """Take one token; the seconds until it is really there (0: go now)."""
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def backoff_delay(attempt: int, base: float, cap: float, rand: float) -> float:
    """The pause before retry ``attempt`` (0 first) without a Retry-After: the capped
    exponential step, jittered into its upper half (``rand`` in [0, 1)), so a crowd of
    clients spreads out while the pause still grows."""
    step = min(cap, base * 2.0 ** min(attempt, 62))
    return step * (0.5 + rand / 2.0)


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """Seconds from now that a ``Retry-After`` asks for (RFC 9110: delay-seconds or an
    HTTP date, a past date meaning now); ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 10**9))  # an absurd value is just "too long"
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
        return None
    return max(0.0, when.timestamp() - wall_now)


def is_loopback(mint_url: str) -> bool:
    return is_loopback_host(httpx.URL(mint_url).host)


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MintPacer:
    """The pacing state of one mint: its bucket and the pause a 429 imposed."""

    def __init__(self, mint_url: str, config: PacingConfig, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        self.mint_url = mint_url
        self.clock = clock
        self.sleep = sleep
        self._wall = wall
        self._rand = rand
        self._loopback = is_loopback(mint_url)
        self._lock = threading.Lock()
        self._held_until = 0.0
        self.config = config
        self._bucket: TokenBucket | None = None
        self.configure(config)

    def configure(self, config: PacingConfig) -> None:
        """Take a new config (the bucket starts full)."""
        with self._lock:
            self.config = config
            paced = config.rate > 0 and (config.loopback or not self._loopback)
            self._bucket = (TokenBucket(config.rate, config.burst, self.clock())
                            if paced else None)

    @property
    def paced(self) -> bool:
        return self._bucket is not None

    def turn_delay(self) -> float:
        """Reserve a turn for one request: the seconds to wait before sending it (a 429's
        pause still running, or the bucket's debt, whichever ends later)."""
        with self._lock:
            now = self.clock()
            held = max(0.0, self._held_until - now)
            bucket = self._bucket.reserve(now) if self._bucket is not None else 0.0
            return max(held, bucket)

    def wait_turn(self) -> None:
        """Block the calling thread until its request may go."""
        delay = self.turn_delay()
        if delay > 0:
            self.sleep(delay)

    def pause_after_429(self, retry_after: str | None, attempt: int,
                        limited_since: float) -> float | None:
        """A 429 came back (``attempt`` 0 the first of this request, which has been
        limited since ``limited_since`` on :attr:`clock`). The pause before the next
        try, now holding every request to this mint; ``None`` when it would end past
        ``max_wait``: give up (nothing is held for it)."""
        config = self.config
        with self._lock:
            now = self.clock()
            asked = parse_retry_after(retry_after, self._wall())
            delay = (asked if asked is not None else
                     backoff_delay(attempt, config.backoff_base, config.backoff_cap,
                                   self._rand()))
            if now + delay - limited_since > config.max_wait:
                return None
            self._held_until = max(self._held_until, now + delay)
            return delay

    def retry_after(self, retry_after: str | None) -> float | None:
        """What a ``Retry-After`` asks for, for the error a caller gets."""
        return parse_retry_after(retry_after, self._wall())


class PacerRegistry:
    """The process's pacers, one per mint URL, all following one :class:`PacingConfig`."""

    def __init__(self, config: PacingConfig | None = None) -> None:
        self._config = config or PacingConfig()
        self._pacers: dict[str, MintPacer] = {}
        self._lock = threading.Lock()

    @property
    def config(self) -> PacingConfig:
        return self._config

    def for_url(self, mint_url: str) -> MintPacer:
        """The pacer of ``mint_url`` (normalized, as a MintClient holds it)."""
        with self._lock:
            pacer = self._pacers.get(mint_url)
            if pacer is None:
                pacer = self._pacers[mint_url] = MintPacer(mint_url, self._config)
            return pacer

    def configure(self, config: PacingConfig) -> None:
        """Use ``config`` from now on, for the pacers made already too."""
        with self._lock:
            self._config = config
            pacers = list(self._pacers.values())
        for pacer in pacers:
            pacer.configure(config)


#: The pacers every MintClient of this process uses unless given one.
PACERS = PacerRegistry()


def configure(config: PacingConfig) -> None:
    """Set how this process paces its mints (``Coco.open(pacing=...)``, ``coco serve``)."""
    PACERS.configure(config)
