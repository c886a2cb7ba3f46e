"""Nutshell's own wallet, driven from the command line, for interoperability tests.

This script runs INSIDE THE NUTSHELL VIRTUAL ENVIRONMENT (``<venv>/bin/python
nutshell_wallet.py ...``; see ``devtools.devmint.run_nutshell_wallet``), never in the
project's, so it may import ``cashu``. Each ``--db`` directory is one Nutshell wallet.

    send --mint URL --db DIR --amount N [--extra K] [--dleq] [--legacy]
         [--lock P2PK:PUB [--timelock S] [--refund PUB]...]
        Mint N+K sats through a bolt11 quote (FakeWallet pays it), then make a token of
        exactly N sats with Nutshell's coin selection (swapping if needed). Prints the token
        on one line: V4 ``cashuB...`` by default, V3 ``cashuA...`` with ``--legacy``.
        With ``--lock`` the token is made by the very helper behind ``cashu send --lock``
        (``cashu.wallet.helpers.send``): a swap into P2PK outputs locked to PUB, with
        Nutshell's default locktime (now + 1 day) unless ``--timelock`` says otherwise.

    lock --mint URL --db DIR
        The wallet's P2PK receiving key, as ``cashu lock p2pk`` makes it (one key per wallet,
        derived from its mnemonic). Prints one line of JSON ``{"pubkey": "02...",
        "lock": "P2PK:02..."}``.

    receive --db DIR [--mint URL] TOKEN
        Redeem TOKEN (V3 or V4) with Nutshell's receive helper (the one behind ``cashu
        receive``; it signs inputs locked to the wallet's key). Prints one line of JSON
        ``{"received": <net sats>, "balance": <wallet balance>}``; received is net of the
        swap's input fees.

Only the result goes to stdout; Nutshell's own prints and logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# The same cap as an ordinary quote: the FakeWallet pays on the first status check.
_QUOTE_PAID_TIMEOUT_S = 10.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nutshell_wallet.py")
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send", help="mint sats, then print a token of exactly --amount")
    send.add_argument("--mint", required=True)
    send.add_argument("--db", required=True, type=Path)
    send.add_argument("--amount", required=True, type=int)
    send.add_argument("--extra", type=int, default=10, help="sats minted beyond --amount")
    send.add_argument("--dleq", action="store_true", help="include DLEQ proofs in the token")
    send.add_argument("--legacy", action="store_true", help="V3 cashuA token instead of V4")
    send.add_argument("--lock", default=None, help="P2PK:<pubkey>, as `cashu send --lock`")
    send.add_argument("--timelock", type=int, default=None,
                      help="seconds until the refund path opens (with --lock)")
    send.add_argument("--refund", action="append", default=None,
                      help="refund public key (with --lock; repeatable)")
    lock = sub.add_parser("lock", help="print the wallet's P2PK key as JSON")
    lock.add_argument("--mint", required=True)
    lock.add_argument("--db", required=True, type=Path)
    receive = sub.add_parser("receive", help="redeem a token, print JSON")
    receive.add_argument("--mint", default=None, help="default: the token's mint")
    receive.add_argument("--db", required=True, type=Path)
    receive.add_argument("token")
    opts = parser.parse_args(argv)
    if opts.command == "send" and (opts.amount <= 0 or opts.extra < 0):
        parser.error("--amount must be positive and --extra not negative")
    if opts.command == "send" and opts.lock is None and (opts.timelock or opts.refund):
        parser.error("--timelock and --refund need --lock")
    if opts.command == "send" and opts.lock is not None and not opts.lock.startswith("P2PK:"):
        parser.error("--lock must be P2PK:<pubkey>")
    return opts


def _isolate(db: Path) -> None:
    """Nutshell reads ./.env and ~/.cashu/.env with override when ``cashu`` is imported."""
    db.mkdir(parents=True, exist_ok=True)
    os.chdir(db)
    os.environ["HOME"] = str(db)
    for key in [k for k in os.environ if k.startswith(("MINT_", "WALLET_", "CASHU_"))]:
        del os.environ[key]


async def _send(opts: argparse.Namespace) -> str:
    from cashu.core.base import MintQuoteState
    from cashu.core.helpers import sum_proofs
    from cashu.wallet.wallet import Wallet

    wallet = await Wallet.with_db(opts.mint, str(opts.db / "wallet"), name="wallet")
    await wallet.load_mint()
    total = opts.amount + opts.extra
    quote = await wallet.request_mint(total)
    deadline = time.monotonic() + _QUOTE_PAID_TIMEOUT_S
    while (await wallet.get_mint_quote(quote.quote)).state != MintQuoteState.paid:
        if time.monotonic() > deadline:
            raise RuntimeError(f"mint quote {quote.quote} not paid after {_QUOTE_PAID_TIMEOUT_S} s")
        await asyncio.sleep(0.1)
    await wallet.mint(total, quote_id=quote.quote)
    await wallet.load_proofs(reload=True)

    if opts.lock is not None:
        return await _send_locked(wallet, opts)

    # Nutshell's coin selection; it may pick more than asked for (up to amount + fees) or
    # nothing, and then we swap to get proofs of exactly the amount.
    try:
        send_proofs, _ = await wallet.select_to_send(wallet.proofs, opts.amount, offline=True)
    except Exception:
        send_proofs = []
    if sum_proofs(send_proofs) != opts.amount:
        _, send_proofs = await wallet.swap_to_send(wallet.proofs, opts.amount)
    if sum_proofs(send_proofs) != opts.amount:
        raise RuntimeError(f"selected {sum_proofs(send_proofs)} sats, wanted {opts.amount}")
    token = await wallet.serialize_proofs(send_proofs, include_dleq=opts.dleq, legacy=opts.legacy)
    await wallet.set_reserved_for_send(send_proofs, reserved=True)
    return str(token)


async def _send_locked(wallet: Any, opts: argparse.Namespace) -> str:
    """``cashu send N --lock P2PK:PUB``: the CLI's own helper, which swaps into locked outputs."""
    from cashu.core.helpers import sum_proofs
    from cashu.core.secret import Secret
    from cashu.wallet.helpers import deserialize_token_from_string, send

    _, token = await send(
        wallet,
        amount=opts.amount,
        lock=opts.lock,
        legacy=opts.legacy,
        include_dleq=opts.dleq,
        refund_pubkeys=opts.refund,
        timelock_seconds=opts.timelock,
    )
    proofs = deserialize_token_from_string(token).proofs
    if sum_proofs(proofs) != opts.amount:
        raise RuntimeError(f"locked token holds {sum_proofs(proofs)} sats, wanted {opts.amount}")
    if any(Secret.deserialize(p.secret).data != opts.lock.split(":", 1)[1] for p in proofs):
        raise RuntimeError("the token is not locked to the key asked for")
    return str(token)


async def _lock(opts: argparse.Namespace) -> dict[str, Any]:
    """What ``cashu lock p2pk`` prints: the wallet's one P2PK key, from its mnemonic."""
    from cashu.wallet.wallet import Wallet

    # No request to the mint: the key comes from the seed in the wallet's database.
    wallet = await Wallet.with_db(opts.mint, str(opts.db / "wallet"), name="wallet")
    pubkey = await wallet.create_p2pk_pubkey()
    return {"pubkey": pubkey, "lock": f"P2PK:{pubkey}"}


async def _receive(opts: argparse.Namespace) -> dict[str, Any]:
    from cashu.wallet.helpers import deserialize_token_from_string, receive
    from cashu.wallet.wallet import Wallet

    token = deserialize_token_from_string(opts.token.strip())
    wallet = await Wallet.with_db(opts.mint or token.mint, str(opts.db / "wallet"), name="wallet")
    await wallet.load_mint()
    await wallet.load_proofs(reload=True)
    before = wallet.available_balance.amount
    await receive(wallet, token)
    await wallet.load_proofs(reload=True)
    after = wallet.available_balance.amount
    return {"received": after - before, "balance": after}


def main(argv: list[str] | None = None) -> int:
    opts = _parse(argv)
    opts.db = opts.db.resolve()
    _isolate(opts.db)

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    out = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Nutshell prints progress to stdout
            if opts.command == "send":
                result: str = asyncio.run(_send(opts))
            elif opts.command == "lock":
                result = json.dumps(asyncio.run(_lock(opts)))
            else:
                result = json.dumps(asyncio.run(_receive(opts)))
    except Exception as exc:  # the caller gets the message and a non-zero exit
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(result, file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
