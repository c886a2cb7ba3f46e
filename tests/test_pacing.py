"""Pacing without a mint and without waiting: the token bucket, the backoff, Retry-After,
and MintClient's 429 loop over an httpx MockTransport, all on an injected clock whose
``sleep`` only moves time forward."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from coco_actors import Coco, RateLimitedError
from coco_actors.control.server import error_body
from coco_actors.errors import ERROR_CODES, InvalidInputError, MintRejectedError
from coco_actors.mint_client import MintClient
from coco_actors.pacing import (
    PACERS,
    MintPacer,
    PacerRegistry,
    PacingConfig,
    TokenBucket,
    backoff_delay,
    is_loopback,
    parse_retry_after,
)
from coco_actors.watcher import PROOF_STATE, MintLink, WatcherConfig
from coco_actors.wire import ProofState

REMOTE = "https://mint.example.com"
WALL = 1_800_000_000.0


class FakeClock:
    """``now`` moves only when someone sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(clock: FakeClock, url: str = REMOTE, rand: float = 0.5,
          **config: float) -> MintPacer:
    return MintPacer(url, PacingConfig(**config),  # type: ignore[arg-type]
                     clock=clock, sleep=clock.sleep, wall=lambda: WALL + clock.now,
                     rand=lambda: rand)


# --- the bucket ------------------------------------------------------------------------------


def test_bucket_lets_a_burst_go_then_paces_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # empty: each caller queues behind the last, half a second apart
    assert bucket.reserve(0.0) == pytest.approx(0.5)
    assert bucket.reserve(0.0) == pytest.approx(1.0)
    # 1.0 s later the debt of 2 is paid: the next waits half a second again
    assert bucket.reserve(1.0) == pytest.approx(0.5)


def test_bucket_saves_at_most_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    # an hour idle refills two tokens, not 36,000
    assert [bucket.reserve(3600.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve(3600.0) == pytest.approx(0.1)


def test_pacer_spaces_requests_to_a_remote_mint() -> None:
    clock = FakeClock()
    p = pacer(clock, rate=4.0, burst=2)
    for _ in range(6):
        p.wait_turn()
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert clock.now == pytest.approx(1001.0)


def test_loopback_mints_are_unpaced_unless_asked() -> None:
    for url in ("http://127.0.0.1:3338", "http://localhost:3338", "http://[::1]:3338"):
        assert is_loopback(url)
        clock = FakeClock()
        p = pacer(clock, url=url, rate=1.0, burst=1)
        assert not p.paced
        for _ in range(10):
            p.wait_turn()
        assert clock.sleeps == []
        paced = pacer(clock, url=url, rate=1.0, burst=1, loopback=True)
        assert paced.paced
        paced.wait_turn()
        paced.wait_turn()
        assert clock.sleeps == [1.0]
    assert not is_loopback(REMOTE)
    assert not is_loopback("http://10.0.0.1:3338")


def test_rate_zero_turns_the_bucket_off() -> None:
    clock = FakeClock()
    p = pacer(clock, rate=0.0)
    for _ in range(100):
        p.wait_turn()
    assert not p.paced and clock.sleeps == []


@pytest.mark.parametrize("bad", [{"rate": -1.0}, {"rate": float("nan")}, {"burst": 0},
                                 {"max_wait": -1.0}, {"backoff_base": 0.0},
                                 {"backoff_base": 5.0, "backoff_cap": 1.0}])
def test_bad_config_is_invalid_input(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        PacingConfig(**bad)  # type: ignore[arg-type]


# --- backoff and Retry-After -----------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    low = [backoff_delay(n, 1.0, 30.0, 0.0) for n in range(8)]
    high = [backoff_delay(n, 1.0, 30.0, 0.999999) for n in range(8)]
    assert low == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert high == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0], rel=1e-5)
    assert backoff_delay(10_000, 1.0, 30.0, 0.5) == pytest.approx(22.5)  # no overflow


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after(None, WALL) is None
    assert parse_retry_after("7", WALL) == 7.0
    assert parse_retry_after(" 0 ", WALL) == 0.0
    assert parse_retry_after("9" * 40, WALL) == 1e9  # absurd: just very long
    date = email.utils.formatdate(WALL + 42, usegmt=True)
    assert parse_retry_after(date, WALL) == pytest.approx(42.0)
    past = email.utils.formatdate(WALL - 100, usegmt=True)
    assert parse_retry_after(past, WALL) == 0.0
    for junk in ("soon", "-5", "1.5", "", "Mon, 99 Foo 2026"):
        assert parse_retry_after(junk, WALL) is None, junk


# --- MintClient's 429 loop -------------------------------------------------------------------


def limited_mint(answers: list[httpx.Response], clock: FakeClock,
                 seen: list[float]) -> Callable[[httpx.Request], httpx.Response]:
    """A mint that gives ``answers`` in order (then 200s), recording when each request came;
    its ``/v1/info`` (a batched read asks it for the array cap first) is answered aside."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/info":
            return httpx.Response(200, json={"name": "limited"})
        seen.append(clock.now)
        if answers:
            return answers.pop(0)
        return httpx.Response(200, json={"states": []})
    return handle


def too_many(retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(429, json={"detail": "Rate limit exceeded."}, headers=headers)


def client_for(handler: Callable[[httpx.Request], httpx.Response],
               p: MintPacer) -> MintClient:
    return MintClient(REMOTE, transport=httpx.MockTransport(handler), pacer=p)


def test_a_429_is_sent_again_after_retry_after_never_sooner() -> None:
    clock, seen = FakeClock(), list[float]()
    p = pacer(clock, rate=0.0)
    ok = httpx.Response(200, json={"keysets": []})
    date = email.utils.formatdate(WALL + 1005 + 9, usegmt=True)  # 9 s after the 2nd try
    answers = [too_many("5"), ok, too_many(date)]
    with client_for(limited_mint(answers, clock, seen), p) as c:
        assert c.get_keysets() == []
        assert c._request("POST", "/v1/checkstate", {"Ys": []}) == {"states": []}
    assert seen == pytest.approx([1000.0, 1005.0, 1005.0, 1014.0])
    assert clock.sleeps == pytest.approx([5.0, 9.0])


def test_without_retry_after_the_backoff_grows() -> None:
    clock, seen = FakeClock(), list[float]()
    p = pacer(clock, rate=0.0, rand=0.0, backoff_base=2.0, backoff_cap=8.0)
    with client_for(limited_mint([too_many()] * 5, clock, seen), p) as c:
        c._request("GET", "/v1/keysets")
    assert clock.sleeps == pytest.approx([1.0, 2.0, 4.0, 4.0, 4.0])
    assert len(seen) == 6


def test_the_pause_holds_every_request_to_that_mint() -> None:
    """A 429 seen by one client delays the next request of another client of the same
    mint (the Watcher's polling and an operation share the pacer)."""
    clock, seen = FakeClock(), list[float]()
    p = pacer(clock, rate=0.0)
    first = client_for(limited_mint([too_many("30")], clock, seen), p)
    other_seen: list[float] = []
    other = client_for(limited_mint([], clock, other_seen), p)
    p.pause_after_429("30", 0, clock.now)  # as first's 429 would
    other._request("GET", "/v1/keysets")
    assert other_seen == [1030.0]
    first.close()
    other.close()


def test_past_the_bound_the_caller_gets_rate_limited_error() -> None:
    clock, seen = FakeClock(), list[float]()
    p = pacer(clock, rate=0.0, max_wait=20.0)
    c = client_for(limited_mint([too_many("8")] * 10, clock, seen), p)
    with c, pytest.raises(RateLimitedError) as info:
        c._request("POST", "/v1/swap", {"inputs": [], "outputs": []})
    # tried at 0, 8 and 16; a fourth try at 24 would be past the 20 s bound
    assert seen == pytest.approx([1000.0, 1008.0, 1016.0])
    err = info.value
    assert (err.retry_after, err.endpoint) == (8.0, "POST /v1/swap")
    assert err.waited == pytest.approx(16.0)
    assert err.mint_url == REMOTE
    assert not isinstance(err, MintRejectedError)  # never "the mint said no"
    # a Retry-After longer than the bound: given up at once, never retried early
    clock2, seen2 = FakeClock(), list[float]()
    p2 = pacer(clock2, rate=0.0, max_wait=20.0)
    c = client_for(limited_mint([too_many("600")], clock2, seen2), p2)
    with c, pytest.raises(RateLimitedError) as info:
        c._request("GET", "/v1/keysets")
    assert seen2 == [1000.0] and clock2.sleeps == []
    assert info.value.retry_after == 600.0


def test_other_4xx_are_still_rejections() -> None:
    clock, seen = FakeClock(), list[float]()
    p = pacer(clock, rate=0.0)
    answer = httpx.Response(400, json={"code": 11001, "detail": "spent"})
    with client_for(limited_mint([answer], clock, seen), p) as c, pytest.raises(MintRejectedError):
        c._request("POST", "/v1/swap", {})
    assert len(seen) == 1 and clock.sleeps == []


def test_the_daemon_answers_429_with_its_code_and_retry_after() -> None:
    err = RateLimitedError("limited", mint_url=REMOTE, endpoint="POST /v1/swap",
                           retry_after=12.0, waited=120.0)
    status, body = error_body(err)
    assert status == 429
    assert body == {"error": {"type": "RateLimitedError", "code": "mint_rate_limited",
                              "message": "limited", "mint_url": REMOTE, "retry_after": 12.0}}
    assert list(ERROR_CODES.values()).count("mint_rate_limited") == 1


# --- one pacer per mint per process ----------------------------------------------------------


def test_every_client_of_a_mint_shares_one_pacer() -> None:
    a, b = MintClient(REMOTE + "/"), MintClient(REMOTE)
    other = MintClient("https://other.example.com")
    try:
        assert a._pacer is b._pacer is PACERS.for_url(REMOTE)
        assert other._pacer is not a._pacer
    finally:
        for c in (a, b, other):
            c.close()


def test_configure_reaches_the_pacers_made_already() -> None:
    registry = PacerRegistry()
    made = registry.for_url(REMOTE)
    assert made.paced and made.config == PacingConfig()
    registry.configure(PacingConfig(rate=0.0, max_wait=5.0))
    assert not made.paced and made.config.max_wait == 5.0
    assert registry.for_url("https://new.example.com").config.max_wait == 5.0


def test_coco_open_configures_the_process(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[PacingConfig] = []
    monkeypatch.setattr(PACERS, "configure", got.append)
    config = PacingConfig(rate=5.0, max_wait=3.0)
    coco = Coco.open(tmp_path / "w", watcher=False, pacing=config)
    coco.close()
    assert got == [config]


# --- the Watcher's polling -------------------------------------------------------------------


def test_the_watchers_poll_waits_out_a_429_in_the_shared_pacer() -> None:
    """A NUT-07 sweep of a watcher link goes through the mint's pacer: a 429 with a
    Retry-After is waited out (on the link's thread) and the sweep still reports; an
    operation's request right after it is held by the same pause."""
    y = "02" + "11" * 32
    clock, seen = FakeClock(), list[float]()
    p = pacer(clock, rate=0.0)
    answers = [too_many("20"), httpx.Response(200, json={"states": [
        {"Y": y, "state": "SPENT", "witness": None}]})]
    reports: list[list[ProofState]] = []
    with client_for(limited_mint(answers, clock, seen), p) as c:
        link = MintLink(REMOTE, c, WatcherConfig(websocket=False),
                        lambda url, states, quotes: reports.append(states), frozenset())
        link.add(PROOF_STATE, [y])
        link._sweep()
    assert clock.sleeps == [20.0] and seen == [1000.0, 1020.0]
    assert [[s.Y for s in r] for r in reports] == [[y]]
    # the next request of any client of the mint waits for the pause a 429 set
    p.pause_after_429("15", 0, clock.now)
    other_seen = list[float]()
    spent = httpx.Response(200, json={"states": [{"Y": y, "state": "SPENT"}]})
    with client_for(limited_mint([spent], clock, other_seen), p) as other:
        assert [s.Y for s in other.check_state([y])] == [y]
    assert other_seen == [1035.0]


# --- coco serve's options --------------------------------------------------------------------


def test_serve_options_configure_the_process(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from cli import main
    from coco_actors.control import lifecycle

    got: list[PacingConfig] = []
    served: list[Path] = []
    monkeypatch.setattr(PACERS, "configure", got.append)
    monkeypatch.setattr(lifecycle, "configure_logging", lambda **kw: None)
    monkeypatch.setattr(lifecycle, "serve", lambda data_dir, **kw: served.append(data_dir))
    runner = CliRunner()
    result = runner.invoke(main, ["serve", "--data-dir", str(tmp_path), "--mint-rate", "2.5",
                                  "--mint-burst", "4", "--pace-loopback",
                                  "--mint-limit-wait", "30"])
    assert result.exit_code == 0, result.output
    assert got == [PacingConfig(rate=2.5, burst=4, loopback=True, max_wait=30.0)]
    assert served == [tmp_path]
    result = runner.invoke(main, ["serve", "--data-dir", str(tmp_path)])
    assert got[-1] == PacingConfig()  # the defaults are the library's
    for bad in (["--mint-burst", "0"], ["--mint-rate", "-1"], ["--mint-limit-wait", "x"]):
        result = runner.invoke(main, ["serve", "--data-dir", str(tmp_path), *bad])
        assert result.exit_code == 2, (bad, result.output)
    assert len(got) == 2 and len(served) == 2
