"""Outputs made again for the active keyset (``OperationBase._for_active``), without a mint:
NUT-13 outputs get fresh counters of the new keyset, P2PK outputs keep their secret and
``r`` (their blinded message does not depend on the keyset), amounts and order stay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pykka
from coincurve import PrivateKey

from coco_actors.crypto.keysets import derive_keyset_id_v01, validate_keys
from coco_actors.crypto.nut11 import P2PKLock
from coco_actors.crypto.nut13 import Nut13Deriver
from coco_actors.crypto.outputs import make_outputs
from coco_actors.mint_client import MintClient
from coco_actors.operations import LiveKeysets, MintContext, OperationBase, OperationDeps
from coco_actors.records import Operation, OperationId, OpState, OpType
from coco_actors.wire import Keyset

MNEMONIC = ("half depart obvious quality work element tank gorilla view sugar picture "
            "humble")


def _keyset(seed: int, active: bool) -> Keyset:
    keys = {a: PrivateKey((seed * 100 + i + 1).to_bytes(32, "big")).public_key.format().hex()
            for i, a in enumerate((1, 2, 4, 8))}
    return Keyset(derive_keyset_id_v01(keys, "sat"), "sat", validate_keys(keys), active=active)


@dataclass
class _Counters:
    """The one ledger call ``_for_active`` makes: counters handed out from 40 on."""

    next: int = 40

    def allocate_counters(self, keyset_id: str, n: int) -> pykka.Future[int]:
        future: pykka.Future[int] = pykka.ThreadingFuture()
        future.set(self.next)
        self.next += n
        return future


def test_outputs_of_a_rotated_keyset_are_made_again_for_the_active_one() -> None:
    old, new = _keyset(1, active=False), _keyset(2, active=True)
    deriver = Nut13Deriver(MNEMONIC)
    deps = cast(OperationDeps, type("Deps", (), {"ledger": _Counters(), "deriver": deriver}))
    with MintClient("http://127.0.0.1:1") as client:
        ctx = MintContext("http://127.0.0.1:1", client, LiveKeysets([old, new]))
        op = Operation(id=OperationId("op-1"), type=OpType.SEND, mint_url=ctx.url, amount=6,
                       state=OpState.PREPARED)
        base = OperationBase(op, ctx, deps)
        lock = P2PKLock.of([PrivateKey().public_key.format().hex()])
        locked = make_outputs([4], old.id, [(lock.secret(), PrivateKey().secret.hex())])
        derived = make_outputs([2, 1], old.id, [deriver.derive(old.id, i) for i in (0, 1)])
        outputs = (*locked, *derived)

        fresh = base._for_active(outputs)
        assert fresh is not None
        assert [o.amount for o in fresh] == [4, 2, 1]
        assert {o.keyset_id for o in fresh} == {new.id}
        # the P2PK output: same secret, r and blinded message, only the keyset id moved
        assert (fresh[0].secret, fresh[0].r, fresh[0].B_) == (locked[0].secret, locked[0].r,
                                                             locked[0].B_)
        # the NUT-13 ones: derived for the new keyset at the counters just handed out
        expected = make_outputs([2, 1], new.id, [deriver.derive(new.id, i) for i in (40, 41)])
        assert [(o.secret, o.B_) for o in fresh[1:]] == [(o.secret, o.B_) for o in expected]
        assert base._for_active(fresh) is None  # all active: nothing to do

        ctx.live.set([old, _keyset(2, active=False), _keyset(3, active=True)])  # a refresh
        again = base._for_active(fresh)
        assert again is not None and {o.keyset_id for o in again} == {_keyset(3, True).id}
