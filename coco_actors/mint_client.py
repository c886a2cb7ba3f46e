"""HTTP client for one Cashu mint: the only place the wallet talks HTTP.

Every call has an explicit timeout. Failures are split the way a saga needs
them (see :mod:`coco_actors.errors`):

- the mint answered with an error (HTTP 4xx, or any answer carrying a NUT
  error code) -> :class:`MintRejectedError`: the request was **not** performed;
- anything else (timeout, refused or reset connection, a 5xx without a NUT
  code, an answer we cannot parse) -> :class:`MintUnreachableError`: the
  outcome is **unknown** and must be checked before anything is compensated.

Every answer is untrusted: it is read up to ``max_body`` bytes while it streams
(a larger one is a :class:`MintProtocolError` that cost bounded memory), parsed
by :mod:`coco_actors.codec` into the frozen types of :mod:`coco_actors.wire`
(any other shape is a :class:`MintProtocolError`), and keys are validated and
checked against their keyset id before use. Every URL is checked by
:func:`normalize_mint_url` before httpx sees it.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from coco_actors.codec import decode_json, encode_json, from_wire_list
from coco_actors.crypto.bdhke import parse_pubkey
from coco_actors.crypto.keysets import validate_keys, verify_keyset_id
from coco_actors.errors import (
    InvalidInputError,
    MintProtocolError,
    MintRejectedError,
    MintUnreachableError,
    RateLimitedError,
)
from coco_actors.pacing import PACERS, MintPacer
from coco_actors.wire import (
    BlindedMessage,
    BlindSignature,
    Keyset,
    KeysetInfo,
    MeltQuote,
    MintQuote,
    Proof,
    ProofState,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

#: Default timeouts (seconds). Melting waits on a lightning payment, hence longer.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=10.0)
#: How long ``recent_info`` trusts an answer (seconds).
INFO_MAX_AGE = 300.0

MELT_TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=10.0, pool=10.0)

#: NUT-07 / NUT-09 requests are split into batches of at most the mint's array cap
#: (``batch_size`` lowers it); before any info answer, this many.
DEFAULT_BATCH = 100
#: The per-request array cap assumed when a mint's info does not announce one
#: (``max_array_length``; Nutshell announces 1000 and answers 422 above it).
DEFAULT_MAX_ARRAY = DEFAULT_BATCH

#: The largest answer body read from a mint (bytes); a restore batch of 100 is ~40 KiB.
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: Seconds an idle pooled connection is reused. Below the server's own keep-alive
#: timeout (uvicorn's, Nutshell's server, is 5 s, httpx's default expiry is 5 s too):
#: at equal values a request can go out on a connection the mint is closing, and
#: comes back "disconnected without a response", outcome unknown.
KEEPALIVE_EXPIRY = 2.0


@dataclass(frozen=True, slots=True)
class MintInfo:
    """The parts of NUT-06 info the wallet uses, plus the raw document.

    Built only by :meth:`from_wire`, which keeps just the ``nuts`` entries that are
    objects: whatever else a mint sends, the methods below cannot raise.
    """

    name: str | None
    pubkey: str | None
    version: str | None
    nuts: dict[str, Any]
    raw: dict[str, Any]

    @property
    def max_array_length(self) -> int:
        """The most inputs, outputs or Ys one request may carry: the announced
        ``max_array_length``, or :data:`DEFAULT_MAX_ARRAY` when absent or unusable."""
        value = self.raw.get("max_array_length")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return DEFAULT_MAX_ARRAY

    @classmethod
    def from_wire(cls, data: Any) -> MintInfo:
        """Info from a parsed answer; :class:`InvalidInputError` unless it is an object."""
        if not isinstance(data, dict):
            raise InvalidInputError(f"info: expected an object, got {type(data).__name__}")
        nuts = data.get("nuts")
        nuts = ({k: v for k, v in nuts.items() if isinstance(k, str) and isinstance(v, dict)}
                if isinstance(nuts, dict) else {})

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(name=text("name"), pubkey=text("pubkey"), version=text("version"),
                   nuts=nuts, raw=data)

    def supports(self, nut: int) -> bool:
        entry = self.nuts.get(str(nut))
        if not isinstance(entry, dict):
            return False
        if "supported" in entry:
            return bool(entry["supported"])
        if "disabled" in entry:
            return not entry["disabled"]
        return bool(entry.get("methods") or entry.get("supported", True))

    def websocket_commands(self, unit: str | None = "sat") -> frozenset[str]:
        """NUT-17: the subscription kinds the mint offers for ``unit`` (None: for any of
        its units; none if unsure)."""
        entry = self.nuts.get("17")
        methods = entry.get("supported") if isinstance(entry, dict) else None
        if not isinstance(methods, list):
            return frozenset()
        kinds: set[str] = set()
        for m in methods:
            if not isinstance(m, dict) or unit not in (None, m.get("unit", "sat")):
                continue
            commands = m.get("commands")
            if isinstance(commands, list):
                kinds.update(c for c in commands if isinstance(c, str))
        return frozenset(kinds)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """NUT-09: the outputs the mint knows, each with its signature (same order)."""

    outputs: tuple[BlindedMessage, ...]
    signatures: tuple[BlindSignature, ...]


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class MintClient:
    """A synchronous client for one mint. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        mint_url: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        batch_size: int | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        transport: httpx.BaseTransport | None = None,
        pacer: MintPacer | None = None,
    ) -> None:
        self.mint_url = normalize_mint_url(mint_url)
        # shared by every client of this mint in the process (the mint limits per address)
        self._pacer = pacer or PACERS.for_url(self.mint_url)
        self._timeout = timeout
        self._batch_size = batch_size  # None: the mint's cap
        self._max_body = max_body
        self._http = httpx.Client(base_url=self.mint_url, timeout=timeout, transport=transport,
                                  limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
                                  headers={"Accept": "application/json",
                                           "Accept-Encoding": "gzip, deflate"})
        self._info: tuple[float, MintInfo] | None = None  # (when, info), for recent_info

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MintClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MintClient({self.mint_url!r})"

    # --- transport ----------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 *, timeout: httpx.Timeout | None = None) -> Any:
        endpoint = f"{method} {path}"
        content, headers = ((encode_json(body), {"Content-Type": "application/json"})
                            if body is not None else (None, None))
        try:
            request = self._http.build_request(method, path, content=content, headers=headers,
                                               timeout=timeout or self._timeout)
        except (httpx.InvalidURL, ValueError) as exc:  # a path built from a mint's answer
            raise InvalidInputError(f"cannot build a request for {endpoint}") from exc
        resp, raw = self._paced(request, endpoint)
        data: Any
        try:
            data = decode_json(raw)
        except InvalidInputError:
            data = None

        if resp.is_success:
            if data is None:
                raise MintProtocolError(f"{self.mint_url} answered {endpoint} with non-JSON",
                                        mint_url=self.mint_url, endpoint=endpoint)
            return data

        code, detail = _error_fields(data, resp.status_code, raw)
        if resp.status_code < 500 or code:
            raise MintRejectedError(detail, code=code, status=resp.status_code,
                                    mint_url=self.mint_url, endpoint=endpoint)
        raise MintUnreachableError(
            f"{self.mint_url} answered {endpoint} with HTTP {resp.status_code}; outcome unknown",
            mint_url=self.mint_url, endpoint=endpoint)

    def _paced(self, request: httpx.Request, endpoint: str) -> tuple[httpx.Response, bytes]:
        """Send ``request`` when the mint's pacer gives it a turn; a 429 means the mint did
        not process it, so it goes again after the pause (the mint's ``Retry-After``, or
        a backoff), and past the pacer's bound the caller gets :class:`RateLimitedError`."""
        pacer = self._pacer
        limited_since: float | None = None
        attempt = 0
        while True:
            pacer.wait_turn()
            resp, raw = self._send(request, endpoint)
            if resp.status_code != 429:
                return resp, raw
            header = resp.headers.get("retry-after")
            if limited_since is None:
                limited_since = pacer.clock()
            pause = pacer.pause_after_429(header, attempt, limited_since)
            if pause is None:
                waited = pacer.clock() - limited_since
                log.warning("%s kept answering %s with 429 for %.0f s; given up",
                            self.mint_url, endpoint, waited)
                raise RateLimitedError(
                    f"{self.mint_url} is limiting requests ({endpoint}: HTTP 429 for"
                    f" {waited:.0f} s); the request was not processed, try again later",
                    mint_url=self.mint_url, endpoint=endpoint,
                    retry_after=pacer.retry_after(header), waited=waited)
            log.info("%s answered %s with 429; sent again in %.1f s", self.mint_url,
                     endpoint, pause)
            attempt += 1

    def _send(self, request: httpx.Request, endpoint: str) -> tuple[httpx.Response, bytes]:
        """One try of ``request``: the answer and its body (read bounded)."""
        try:
            resp = self._http.send(request, stream=True)
            try:
                raw = self._read_bounded(resp, endpoint)
            finally:
                resp.close()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise MintUnreachableError(
                f"cannot connect to {self.mint_url} ({endpoint}): {type(exc).__name__}",
                mint_url=self.mint_url, endpoint=endpoint, request_sent=False) from exc
        except httpx.TimeoutException as exc:
            raise MintUnreachableError(
                f"timed out waiting for {self.mint_url} ({endpoint}); outcome unknown",
                mint_url=self.mint_url, endpoint=endpoint) from exc
        except httpx.HTTPError as exc:  # reset, protocol error, read error...
            raise MintUnreachableError(
                f"connection to {self.mint_url} failed ({endpoint}): {type(exc).__name__};"
                " outcome unknown", mint_url=self.mint_url, endpoint=endpoint) from exc
        return resp, raw

    def _read_bounded(self, resp: httpx.Response, endpoint: str) -> bytes:
        """The body, read chunk by chunk and refused past ``max_body`` bytes.

        A gzip or deflate body is inflated here, never more than the limit at a time
        (httpx would inflate each chunk whole: a compression bomb); other encodings
        are refused.
        """
        limit = self._max_body
        encoding = resp.headers.get("content-encoding", "").strip().lower()
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(endpoint)
        inflate: Any = None
        if encoding in ("gzip", "x-gzip"):
            inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            inflate = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise MintProtocolError(f"{self.mint_url} answered {endpoint} with content"
                                    f" encoding {encoding[:40]!r}", mint_url=self.mint_url,
                                    endpoint=endpoint)
        chunks: list[bytes] = []
        size = 0
        if resp.is_stream_consumed:  # already in memory and decoded (a test transport's)
            raw_chunks, inflate = iter([resp.content]), None
        else:
            raw_chunks = resp.iter_raw()
        try:
            for raw in raw_chunks:
                while raw:
                    if inflate is None:
                        chunk, raw = raw, b""
                    else:
                        chunk = inflate.decompress(raw, limit - size + 1)
                        raw = inflate.unconsumed_tail
                    size += len(chunk)
                    if size > limit:
                        raise self._too_large(endpoint)
                    chunks.append(chunk)
        except zlib.error:
            raise MintProtocolError(f"{self.mint_url} answered {endpoint} with a corrupt"
                                    f" {encoding} body", mint_url=self.mint_url,
                                    endpoint=endpoint) from None
        return b"".join(chunks)

    def _too_large(self, endpoint: str) -> MintProtocolError:
        return MintProtocolError(
            f"{self.mint_url} answered {endpoint} with more than {self._max_body} bytes;"
            " outcome unknown", mint_url=self.mint_url, endpoint=endpoint)

    def _parse(self, endpoint: str, fn: Callable[P, T], *args: P.args,
               **kwargs: P.kwargs) -> T:
        """Parse a success body; a malformed one means we cannot know what happened."""
        try:
            return fn(*args, **kwargs)
        except (InvalidInputError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise MintProtocolError(f"{self.mint_url} answered {endpoint} malformed: {exc}",
                                    mint_url=self.mint_url, endpoint=endpoint) from exc

    # --- NUT-06 / NUT-01 / NUT-02 -------------------------------------------------

    def recent_info(self, max_age: float = INFO_MAX_AGE) -> MintInfo:
        """The mint's info, asked again only when the last answer is older than
        ``max_age`` seconds (what it supports changes rarely; a melt asks every time)."""
        cached = self._info
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        return self.get_info()

    def requires_dleq(self) -> bool:
        """NUT-12: whether every blind signature from this mint must carry a DLEQ proof.

        Asked of :meth:`recent_info`, so unblinding costs an info request at most
        every few minutes. When the mint cannot be asked, the last answer stands;
        without one, not knowing is an error, never a pass.
        """
        cached = self._info
        try:
            return self.recent_info().supports(12)
        except MintUnreachableError:
            if cached is None:
                raise
            return cached[1].supports(12)

    def max_array_length(self) -> int:
        """The mint's per-request array cap (:attr:`MintInfo.max_array_length`), from
        :meth:`recent_info`; when the mint cannot be asked, the last answer stands, and
        without one the safe default."""
        cached = self._info
        try:
            return self.recent_info().max_array_length
        except (MintUnreachableError, MintRejectedError, MintProtocolError):
            return cached[1].max_array_length if cached is not None else DEFAULT_MAX_ARRAY

    def _batch(self) -> int:
        """Entries per NUT-07 / NUT-09 request: the configured size, never above the cap
        (from the last info answer; asked first when there is none)."""
        cached = self._info
        cap = cached[1].max_array_length if cached is not None else self.max_array_length()
        return cap if self._batch_size is None else min(self._batch_size, cap)

    def get_info(self) -> MintInfo:
        info = self._get_info()
        self._info = (time.monotonic(), info)
        return info

    def _get_info(self) -> MintInfo:
        data = self._request("GET", "/v1/info")
        return self._parse("GET /v1/info", MintInfo.from_wire, data)

    def get_keysets(self) -> list[KeysetInfo]:
        data = self._request("GET", "/v1/keysets")
        return self._parse("GET /v1/keysets",
                           lambda: from_wire_list(KeysetInfo, data["keysets"], "keysets"))

    def get_keys(self, keyset_id: str | None = None) -> list[Keyset]:
        """Keys of the active keysets (or of one keyset), validated against their ids.

        Only keys of a keyset whose id hashes correctly are returned: a mismatch
        raises :class:`CryptoError` rather than letting the wallet trust them.
        """
        path = f"/v1/keys/{_segment(keyset_id)}" if keyset_id else "/v1/keys"
        data = self._request("GET", path)

        def parse() -> list[Keyset]:
            return [replace(ks, keys=validate_keys(ks.keys))
                    for ks in from_wire_list(Keyset, data["keysets"], "keysets")]

        keysets = self._parse(f"GET {path}", parse)
        for ks in keysets:
            verify_keyset_id(ks)
        return keysets

    # --- NUT-04 / NUT-23: minting -------------------------------------------------

    def create_mint_quote(self, amount: int, unit: str = "sat",
                          pubkey: str | None = None) -> MintQuote:
        """A new quote; with ``pubkey`` (NUT-20) it is locked to that key.

        A locked quote must come back with the same key: an answer without it means
        the mint ignored the lock (anyone who learns the id could mint the quote), a
        :class:`MintProtocolError` rather than a quote the wallet believes is safe.
        """
        _check_amount(amount)
        body: dict[str, Any] = {"amount": amount, "unit": unit}
        if pubkey is not None:
            parse_pubkey(pubkey, "NUT-20 quote public key")
            pubkey = pubkey.lower()
            body["pubkey"] = pubkey
        endpoint = "POST /v1/mint/quote/bolt11"
        data = self._request("POST", "/v1/mint/quote/bolt11", body)
        quote = self._parse(endpoint, lambda: MintQuote.from_wire(data, amount=amount, unit=unit))
        if pubkey is not None and (quote.pubkey or "").lower() != pubkey:
            raise MintProtocolError(f"{self.mint_url} answered {endpoint} without the NUT-20"
                                    " public key the quote was asked for",
                                    mint_url=self.mint_url, endpoint=endpoint)
        return quote

    def get_mint_quote(self, quote_id: str) -> MintQuote:
        data = self._request("GET", f"/v1/mint/quote/bolt11/{_segment(quote_id)}")
        return self._parse("GET /v1/mint/quote/bolt11", lambda: MintQuote.from_wire(data))

    def mint(self, quote_id: str, outputs: Sequence[BlindedMessage],
             signature: str | None = None) -> list[BlindSignature]:
        """Mint a paid quote; ``signature`` is NUT-20's, required for a locked quote
        (see :func:`coco_actors.crypto.nut20.sign_mint_quote`)."""
        body: dict[str, Any] = {"quote": quote_id, "outputs": [o.to_wire() for o in outputs]}
        if signature is not None:
            body["signature"] = signature
        data = self._request("POST", "/v1/mint/bolt11", body)
        return self._signatures("POST /v1/mint/bolt11", data, len(outputs))

    # --- NUT-03: swap -------------------------------------------------------------

    def swap(self, inputs: Sequence[Proof],
             outputs: Sequence[BlindedMessage]) -> list[BlindSignature]:
        data = self._request("POST", "/v1/swap", {
            "inputs": [p.to_wire() for p in inputs],
            "outputs": [o.to_wire() for o in outputs],
        })
        return self._signatures("POST /v1/swap", data, len(outputs))

    # --- NUT-07: proof states -----------------------------------------------------

    def check_state(self, ys: Sequence[str]) -> list[ProofState]:
        """States for ``ys`` in the same order, asked in batches."""
        states: list[ProofState] = []
        for batch in _batches(list(ys), self._batch()):
            data = self._request("POST", "/v1/checkstate", {"Ys": list(batch)})
            got = self._parse("POST /v1/checkstate", _states, data)
            by_y = {s.Y: s for s in got}  # the codec lowercases hex
            missing = [y for y in batch if y.lower() not in by_y]
            if missing:
                raise MintProtocolError(f"checkstate answer lacks {len(missing)} of the Ys asked",
                                        mint_url=self.mint_url, endpoint="POST /v1/checkstate")
            states.extend(by_y[y.lower()] for y in batch)
        return states

    # --- NUT-09: restore ----------------------------------------------------------

    def restore(self, outputs: Sequence[BlindedMessage]) -> RestoreResult:
        """The outputs among ``outputs`` the mint has signed, with their signatures."""
        got_outputs: list[BlindedMessage] = []
        got_sigs: list[BlindSignature] = []
        for batch in _batches(list(outputs), self._batch()):
            data = self._request("POST", "/v1/restore",
                                 {"outputs": [o.to_wire() for o in batch]})

            def parse(d: Any = data) -> tuple[list[BlindedMessage], list[BlindSignature]]:
                raw_sigs = d.get("signatures")
                if raw_sigs is None:
                    raw_sigs = d["promises"]  # pre-1.0 name
                outs = from_wire_list(BlindedMessage, d["outputs"], "outputs")
                sigs = from_wire_list(BlindSignature, raw_sigs, "signatures")
                if len(outs) != len(sigs):
                    raise ValueError("outputs and signatures differ in length")
                return outs, sigs

            outs, sigs = self._parse("POST /v1/restore", parse)
            got_outputs.extend(outs)
            got_sigs.extend(sigs)
        return RestoreResult(tuple(got_outputs), tuple(got_sigs))

    # --- NUT-05 / NUT-08 / NUT-23: melting ----------------------------------------

    def create_melt_quote(self, request: str, unit: str = "sat") -> MeltQuote:
        data = self._request("POST", "/v1/melt/quote/bolt11", {"request": request, "unit": unit})
        return self._parse("POST /v1/melt/quote/bolt11", lambda: MeltQuote.from_wire(data))

    def get_melt_quote(self, quote_id: str) -> MeltQuote:
        data = self._request("GET", f"/v1/melt/quote/bolt11/{_segment(quote_id)}")
        return self._parse("GET /v1/melt/quote/bolt11", lambda: MeltQuote.from_wire(data))

    def melt(self, quote_id: str, inputs: Sequence[Proof],
             outputs: Sequence[BlindedMessage] = (), *, wait: float | None = None) -> MeltQuote:
        """Pay the quote with ``inputs``; ``outputs`` are NUT-08 blanks for the change.

        The mint may hold the answer until the payment is decided: ``wait`` bounds how
        long (seconds; default 120). A timeout is not a failure (MintUnreachableError:
        the payment may still be in flight, ask the quote).
        """
        body: dict[str, Any] = {"quote": quote_id, "inputs": [p.to_wire() for p in inputs]}
        if outputs:
            body["outputs"] = [o.to_wire() for o in outputs]
        timeout = MELT_TIMEOUT if wait is None else httpx.Timeout(
            connect=5.0, read=max(wait, 1.0), write=10.0, pool=10.0)
        data = self._request("POST", "/v1/melt/bolt11", body, timeout=timeout)
        return self._parse("POST /v1/melt/bolt11", lambda: MeltQuote.from_wire(data))

    # --- helpers ------------------------------------------------------------------

    def _signatures(self, endpoint: str, data: Any, expected: int) -> list[BlindSignature]:
        def parse() -> list[BlindSignature]:
            raw = data.get("signatures")
            if raw is None:
                raw = data["promises"]  # pre-1.0 name, still seen in the wild
            return from_wire_list(BlindSignature, raw, "signatures")

        sigs = self._parse(endpoint, parse)
        if len(sigs) != expected:
            raise MintProtocolError(f"{endpoint}: {len(sigs)} signatures for {expected} outputs",
                                    mint_url=self.mint_url, endpoint=endpoint)
        return sigs


def _segment(value: str) -> str:
    """One path segment from an id a mint or a user gave: never a separator or a query."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise InvalidInputError("an id in a mint path must be a non-empty string")
    return quote(value, safe="")


def _states(data: Any) -> list[ProofState]:
    return from_wire_list(ProofState, data["states"], "states")


def normalize_mint_url(url: str) -> str:
    """Canonical form used as the mint's identity: scheme://host[:port][/path], no slash.

    Anything httpx could not use, or that would make two spellings of one mint
    (userinfo, a query, a fragment), is an :class:`InvalidInputError`.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError("mint url is empty")
    url = url.strip().rstrip("/")
    shown = url if len(url) <= 200 else url[:200] + "..."
    if len(url) > 2048 or not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidInputError(f"mint url is not a valid URL: {shown!r}")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError):
        raise InvalidInputError(f"mint url is not a valid URL: {shown!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(f"mint url must be http(s)://host[:port], got {shown!r}")
    if port is not None and not 0 < port < 65536:
        raise InvalidInputError(f"mint url has a bad port: {shown!r}")
    if parsed.userinfo or "@" in parsed.netloc.decode("ascii", "replace"):
        raise InvalidInputError("mint url must not carry a user name or password")
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise InvalidInputError(f"mint url must not have a query or fragment: {shown!r}")
    return url


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInputError(f"amount must be a positive integer, got {amount!r}")


def _error_fields(data: Any, status: int, raw: bytes) -> tuple[int, str]:
    if isinstance(data, dict):
        code = data.get("code")
        detail = data.get("detail") or data.get("error") or ""
        code = code if isinstance(code, int) and not isinstance(code, bool) else 0
        if not isinstance(detail, str):
            detail = encode_json(detail).decode()
        return code, detail[:300] or f"HTTP {status}"
    return 0, f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
