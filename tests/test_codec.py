"""The codec: stored records (attribute names, schema version) and NUT JSON (mint answers).

Round trips are checked as properties over seeded random records, so every
optional field is seen both set and unset.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

from coco_actors.codec import (
    SCHEMA_VERSION,
    decode_record,
    encode_record,
    from_wire,
    from_wire_list,
    to_builtins,
    to_wire,
)
from coco_actors.errors import CocoError, InvalidInputError, SchemaVersionError, StoreError
from coco_actors.records import (
    HistoryEntry,
    MintRecord,
    Operation,
    OperationId,
    OpState,
    OpType,
    ProofRecord,
    ProofStatus,
)
from coco_actors.store import Store
from coco_actors.wire import (
    DLEQ,
    BlindedMessage,
    BlindingData,
    BlindSignature,
    Keyset,
    KeysetInfo,
    MeltQuote,
    MeltQuoteState,
    MintQuote,
    Proof,
    ProofState,
    ProofStateKind,
)

SEEDS = range(150)


# --- random records ----------------------------------------------------------------------


def _hex(rng: random.Random, nbytes: int) -> str:
    return rng.randbytes(nbytes).hex()


def _point(rng: random.Random) -> str:
    return rng.choice(("02", "03")) + _hex(rng, 32)


def _maybe(rng: random.Random, value: Any) -> Any:
    return value if rng.random() < 0.5 else None


def _amount(rng: random.Random) -> int:
    return 1 << rng.randrange(64)


def _keyset_id(rng: random.Random) -> str:
    return rng.choice(("00" + _hex(rng, 7), "01" + _hex(rng, 32)))


def _proof(rng: random.Random) -> Proof:
    dleq = DLEQ(e=_hex(rng, 32), s=_hex(rng, 32), r=_maybe(rng, _hex(rng, 32)))
    return Proof(amount=_amount(rng), keyset_id=_keyset_id(rng), secret=_hex(rng, 32),
                 C=_point(rng), dleq=_maybe(rng, dleq),
                 witness=_maybe(rng, '{"signatures":["' + _hex(rng, 64) + '"]}'))


def _blinding(rng: random.Random) -> BlindingData:
    return BlindingData(amount=_amount(rng), keyset_id=_keyset_id(rng), secret=_hex(rng, 32),
                        r=_hex(rng, 32), B_=_point(rng))


def _many(rng: random.Random, make: Any, most: int = 12) -> tuple[Any, ...]:
    return tuple(make(rng) for _ in range(rng.randrange(most + 1)))


def _operation(rng: random.Random) -> Operation:
    created = rng.randrange(1, 2**41)
    return Operation(
        id=OperationId(_hex(rng, 16)), type=rng.choice(list(OpType)),
        mint_url=f"http://127.0.0.1:{rng.randrange(1, 65536)}", amount=rng.randrange(2**63),
        state=rng.choice(list(OpState)), unit=rng.choice(("sat", "usd", "msat")),
        created_at=created, updated_at=created + rng.randrange(10**6),
        fee=rng.randrange(100), input_amount=rng.randrange(2**40),
        needs_swap=rng.random() < 0.5, token=_maybe(rng, "cashuB" + _hex(rng, 40)),
        error=_maybe(rng, "mint said no ✗"),
        input_ys=tuple(_point(rng) for _ in range(rng.randrange(4))),
        inputs=_many(rng, _proof, 4), outputs=_many(rng, _blinding),
        send_output_count=rng.randrange(12), send_proofs=_many(rng, _proof, 6),
        reclaim_outputs=_many(rng, _blinding, 6), quote_id=_maybe(rng, _hex(rng, 8)),
        quote_request=_maybe(rng, "lnbc1" + _hex(rng, 20)))


def _proof_record(rng: random.Random) -> ProofRecord:
    reserved = rng.random() < 0.5
    return ProofRecord(proof=_proof(rng), mint_url="http://127.0.0.1:3338", Y=_point(rng),
                       status=ProofStatus.RESERVED if reserved else ProofStatus.READY,
                       operation_id=OperationId(_hex(rng, 16)) if reserved else None)


def _mint_record(rng: random.Random) -> MintRecord:
    return MintRecord(url=f"https://mint{rng.randrange(99)}.example",
                      name=_maybe(rng, "Mint \"quoted\""), added_at=rng.randrange(2**41))


def _keyset(rng: random.Random) -> Keyset:
    return Keyset(id=_keyset_id(rng), unit=rng.choice(("sat", "usd")),
                  keys={1 << i: _point(rng) for i in range(rng.randrange(1, 64))},
                  active=rng.random() < 0.5, input_fee_ppk=rng.randrange(1000),
                  final_expiry=_maybe(rng, rng.randrange(2**40)))


MAKERS = {
    "ProofRecord": _proof_record,
    "Operation": _operation,
    "HistoryEntry": lambda rng: HistoryEntry.of(_operation(rng)),
    "MintRecord": _mint_record,
    "Keyset": _keyset,
}


# --- records: round trips and names ------------------------------------------------------


@pytest.mark.parametrize("kind", list(MAKERS))
def test_every_record_round_trips(kind: str) -> None:
    for seed in SEEDS:
        record = MAKERS[kind](random.Random(seed))
        assert decode_record(encode_record(record), type(record)) == record, seed


def _assert_keys_are_attribute_names(stored: Any, value: Any, where: str) -> None:
    if dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)]
        assert list(stored) == names, where
        for name in names:
            _assert_keys_are_attribute_names(stored[name], getattr(value, name), f"{where}.{name}")
    elif isinstance(value, tuple):
        assert len(stored) == len(value), where
        for i, (s, v) in enumerate(zip(stored, value, strict=True)):
            _assert_keys_are_attribute_names(s, v, f"{where}[{i}]")


@pytest.mark.parametrize("kind", list(MAKERS))
def test_stored_keys_are_the_attribute_names(kind: str) -> None:
    for seed in SEEDS[:30]:
        record = MAKERS[kind](random.Random(seed))
        stored = json.loads(encode_record(record))
        assert next(iter(stored)) == "v" and stored.pop("v") == SCHEMA_VERSION
        _assert_keys_are_attribute_names(stored, record, kind)


def test_proof_record_is_stored_under_its_own_names() -> None:
    rng = random.Random(7)
    record = dataclasses.replace(_proof_record(rng), status=ProofStatus.RESERVED,
                                 operation_id=OperationId("op-1"))
    stored = json.loads(encode_record(record))
    assert stored["mint_url"] == record.mint_url and stored["operation_id"] == "op-1"
    assert "mint" not in stored and "op" not in stored
    assert stored["proof"]["keyset_id"] == record.proof.keyset_id and "id" not in stored["proof"]


def test_outputs_of_an_operation_keep_their_keyset_id_name() -> None:
    op = _operation(random.Random(3))
    op = dataclasses.replace(op, outputs=(_blinding(random.Random(4)),))
    stored = json.loads(encode_record(op))
    assert stored["outputs"][0]["keyset_id"] == op.outputs[0].keyset_id
    assert stored["type"] == op.type.value and stored["state"] == op.state.value


# --- records: the schema version ---------------------------------------------------------


def _stored_with(**changes: Any) -> bytes:
    stored = json.loads(encode_record(_proof_record(random.Random(1))))
    stored.update(changes)
    return json.dumps(stored).encode()


@pytest.mark.parametrize("v", [1, 3, 0, -2, "2", 2.5, True, [2], None])
def test_a_record_of_another_schema_version_is_refused(v: Any) -> None:
    with pytest.raises(SchemaVersionError) as info:
        decode_record(_stored_with(v=v), ProofRecord)
    assert isinstance(info.value, StoreError) and isinstance(info.value, CocoError)
    assert info.value.found == v and info.value.expected == SCHEMA_VERSION
    assert "ProofRecord" in str(info.value) and f"version {SCHEMA_VERSION}" in str(info.value)


def test_a_record_without_version_is_refused() -> None:
    stored = json.loads(_stored_with())
    del stored["v"]
    with pytest.raises(SchemaVersionError, match="no schema version"):
        decode_record(json.dumps(stored).encode(), ProofRecord)


def test_a_v1_record_of_the_old_layout_is_refused_not_misread() -> None:
    v1 = {"v": 1, "mint": "http://127.0.0.1:3338", "Y": "02" + "11" * 32, "status": "ready",
          "op": None, "proof": {"amount": 1, "id": "00" * 8, "secret": "s", "C": "02" * 33}}
    with pytest.raises(SchemaVersionError, match="schema version 1"):
        decode_record(json.dumps(v1).encode(), ProofRecord)


def test_the_version_may_come_anywhere_in_the_object() -> None:
    record = _proof_record(random.Random(2))
    stored = json.loads(encode_record(record))
    reordered = {**{k: v for k, v in stored.items() if k != "v"}, "v": SCHEMA_VERSION}
    assert decode_record(json.dumps(reordered).encode(), ProofRecord) == record


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"v"'],
                         ids=["empty", "not json", "array", "string"])
def test_a_record_that_is_not_an_object_is_a_store_error(raw: bytes) -> None:
    with pytest.raises(StoreError) as info:
        decode_record(raw, Operation)
    assert type(info.value) is StoreError


def test_a_malformed_record_is_a_store_error_naming_the_field_not_the_secret() -> None:
    record = _proof_record(random.Random(5))
    stored = json.loads(encode_record(record))
    stored["proof"]["amount"] = "lots"
    with pytest.raises(StoreError) as info:
        decode_record(json.dumps(stored).encode(), ProofRecord)
    assert type(info.value) is StoreError
    assert "$.proof.amount" in str(info.value)
    assert record.proof.secret not in str(info.value)


def test_an_unknown_enum_value_is_a_store_error() -> None:
    stored = json.loads(encode_record(_operation(random.Random(6))))
    stored["state"] = "exploded"
    with pytest.raises(StoreError, match=r"\$\.state"):
        decode_record(json.dumps(stored).encode(), Operation)


# --- the store reads what it wrote, and refuses other versions ---------------------------


def test_store_round_trips_every_record_kind_across_reopen(tmp_path: Path) -> None:
    rng = random.Random(11)
    proofs = [_proof_record(rng) for _ in range(5)]
    ops = [_operation(rng) for _ in range(5)]
    mint = _mint_record(rng)
    keysets = [_keyset(rng) for _ in range(2)]

    def write(batch: Any) -> None:
        for rec in proofs:
            batch.put_proof(rec)
        for op in ops:
            batch.put_operation(op)
        batch.put_mint(mint)
        for ks in keysets:
            batch.put_keyset(mint.url, ks)

    store = Store(tmp_path)
    try:
        store.transact(write)
    finally:
        store.close()
    store = Store(tmp_path)
    try:
        snap = store.snapshot()
        assert sorted(snap.proofs, key=lambda r: r.Y) == sorted(proofs, key=lambda r: r.Y)
        assert sorted(snap.operations, key=lambda o: o.id) == sorted(ops, key=lambda o: o.id)
        assert snap.mints == [mint]
        assert sorted(snap.keysets[mint.url], key=lambda k: k.id) == sorted(
            keysets, key=lambda k: k.id)
        assert store.get_operation(ops[0].id) == ops[0]
        newest_first = sorted(ops, key=lambda o: (o.created_at, o.id), reverse=True)
        assert store.history() == [HistoryEntry.of(op) for op in newest_first]
    finally:
        store.close()


def test_store_refuses_a_record_of_another_version(tmp_path: Path) -> None:
    record = _proof_record(random.Random(12))
    store = Store(tmp_path)
    try:
        store.transact(lambda b: b.put_proof(record))
        old = _stored_with(v=1)
        with store.env.begin(write=True) as txn:
            txn.put(b"\x02" * 33, old, db=store._dbs["proofs"])
        with pytest.raises(SchemaVersionError):
            store.snapshot()
    finally:
        store.close()


# --- NUT JSON ----------------------------------------------------------------------------


def test_wire_values_round_trip_through_nut_json() -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        proof = _proof(rng)
        assert Proof.from_wire(proof.to_wire(include_dleq=True)) == proof
        sig = BlindSignature(rng.randrange(2**20), _keyset_id(rng), _point(rng),
                             _maybe(rng, DLEQ(_hex(rng, 32), _hex(rng, 32))))
        assert BlindSignature.from_wire(sig.to_wire()) == sig
        out = BlindedMessage(rng.randrange(2**20), _keyset_id(rng), _point(rng))
        assert BlindedMessage.from_wire(out.to_wire()) == out


def test_nut_json_calls_a_keyset_id_id_and_omits_absent_fields() -> None:
    proof = Proof(amount=8, keyset_id="00" * 8, secret="s", C="02" * 33)
    assert proof.to_wire() == {"amount": 8, "id": "00" * 8, "secret": "s", "C": "02" * 33}
    with_dleq = dataclasses.replace(proof, dleq=DLEQ("aa" * 32, "bb" * 32), witness="w")
    assert with_dleq.to_wire() == {**proof.to_wire(), "witness": "w"}
    assert with_dleq.to_wire(include_dleq=True)["dleq"] == {"e": "aa" * 32, "s": "bb" * 32}
    assert to_wire(BlindedMessage(0, "01" * 33, "03" * 33)) == {
        "amount": 0, "id": "01" * 33, "B_": "03" * 33}


def test_keysets_keep_their_own_id() -> None:
    info = from_wire_list(KeysetInfo, [{"id": "00AB" * 4, "unit": "sat", "active": True,
                                        "input_fee_ppk": None}], "keysets")
    assert info == [KeysetInfo(id="00ab" * 4, unit="sat", active=True, input_fee_ppk=0)]
    [keyset] = from_wire_list(Keyset, [{"id": "00" * 8, "unit": "sat",
                                        "keys": {"1": "02" * 33, "2": "03" * 33}}], "keysets")
    assert keyset.keys == {1: "02" * 33, 2: "03" * 33}


def test_nut_hex_is_read_lowercased_and_null_as_absent() -> None:
    proof = Proof.from_wire({"amount": 1, "id": "00AD268C4D1F5826", "secret": "SeCrEt",
                             "C": "02" + "AB" * 32, "dleq": None, "witness": None})
    assert proof == Proof(amount=1, keyset_id="00ad268c4d1f5826", secret="SeCrEt",
                          C="02" + "ab" * 32)
    state = ProofState.from_wire({"Y": "03" + "CD" * 32, "state": "SPENT", "witness": None})
    assert state == ProofState(Y="03" + "cd" * 32, state=ProofStateKind.SPENT)


def test_melt_quote_change_is_read_with_nut_keyset_ids() -> None:
    quote = MeltQuote.from_wire({
        "quote": "q1", "amount": 100, "fee_reserve": 2, "state": "PAID", "expiry": None,
        "payment_preimage": "00" * 32, "unknown_future_field": {"x": 1},
        "change": [{"amount": 2, "id": "00" * 8, "C_": "02" * 33}]})
    assert quote.state is MeltQuoteState.PAID and quote.unit == "sat"
    assert quote.change == (BlindSignature(2, "00" * 8, "02" * 33),)


def test_mint_quote_without_amount_or_unit_gets_the_requested_ones() -> None:
    quote = MintQuote.from_wire({"quote": "q", "request": "lnbc", "state": "UNPAID",
                                 "amount": None}, amount=21, unit="usd")
    assert (quote.amount, quote.unit) == (21, "usd")


WIRE_MALFORMED: dict[str, tuple[type[Any], Any, str]] = {
    "not an object": (Proof, ["x"], "proof: expected an object, got array"),
    "missing amount": (Proof, {"id": "00", "secret": "s", "C": "02" * 33},
                       "proof: missing field 'amount'"),
    "null amount": (Proof, {"amount": None, "id": "00", "secret": "s", "C": "02" * 33},
                    "proof: missing field 'amount'"),
    "amount zero": (Proof, {"amount": 0, "id": "00", "secret": "s", "C": "02" * 33},
                    "field 'amount' must be positive"),
    "amount 2^64": (Proof, {"amount": 2**64, "id": "00", "secret": "s", "C": "02" * 33},
                    "proof: field 'amount' is too large"),
    "amount float": (Proof, {"amount": 1.0, "id": "00", "secret": "s", "C": "02" * 33},
                     "field 'amount' must be an integer"),
    "amount bool": (Proof, {"amount": True, "id": "00", "secret": "s", "C": "02" * 33},
                    "field 'amount' must be an integer"),
    "odd-length id": (Proof, {"amount": 1, "id": "000", "secret": "s", "C": "02" * 33},
                      "field 'id' is not hex"),
    "id with newline": (Proof, {"amount": 1, "id": "00\n", "secret": "s", "C": "02" * 33},
                        "field 'id' is not hex"),
    "short C_": (BlindSignature, {"amount": 1, "id": "00", "C_": "02" * 32},
                 "signature: field 'C_' must be 33 bytes"),
    "negative blank": (BlindedMessage, {"amount": -1, "id": "00", "B_": "02" * 33},
                       "field 'amount' must not be negative"),
    "dleq e short": (BlindSignature, {"amount": 1, "id": "00", "C_": "02" * 33,
                                      "dleq": {"e": "00", "s": "00" * 32}},
                     "signature dleq: field 'e' must be 32 bytes"),
    "unknown state": (ProofState, {"Y": "02" * 33, "state": "LOST"},
                      "proof state: field 'state' has unknown value 'LOST'"),
    "active not bool": (KeysetInfo, {"id": "00", "unit": "sat", "active": "yes"},
                        "keyset: field 'active' must be a boolean"),
    "fee negative": (KeysetInfo, {"id": "00", "unit": "sat", "active": True,
                                  "input_fee_ppk": -1},
                     "field 'input_fee_ppk' must not be negative"),
    "keys not amounts": (Keyset, {"id": "00", "unit": "sat", "keys": {"one": "02" * 33}},
                         "field 'keys' has a key that must be an integer"),
    "change not a list": (MeltQuote, {"quote": "q", "amount": 1, "fee_reserve": 0,
                                      "state": "PAID", "change": {"amount": 1}},
                          "melt quote: field 'change' must be a list"),
    "change item": (MeltQuote, {"quote": "q", "amount": 1, "fee_reserve": 0, "state": "PAID",
                                "change": [{"amount": 1, "id": "zz", "C_": "02" * 33}]},
                    "melt quote change[0]: field 'id' is not hex"),
}


@pytest.mark.parametrize(("cls", "data", "says"), list(WIRE_MALFORMED.values()),
                         ids=list(WIRE_MALFORMED))
def test_malformed_nut_json_is_invalid_input_naming_the_field(cls: type[Any], data: Any,
                                                              says: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        from_wire(cls, data, cls.WHAT)
    assert type(info.value) is InvalidInputError
    assert says in str(info.value)


def test_a_bad_list_item_is_named_by_its_index() -> None:
    with pytest.raises(InvalidInputError, match=r"^signatures\[1\]: expected an object, got"):
        from_wire_list(BlindSignature, [{"amount": 1, "id": "00", "C_": "02" * 33}, 5],
                       "signatures")


def test_wire_errors_do_not_echo_secrets() -> None:
    secret = "a-very-secret-preimage"
    with pytest.raises(InvalidInputError) as info:
        Proof.from_wire({"amount": 1, "id": "00", "secret": secret, "C": secret})
    assert secret not in str(info.value)


# --- views -------------------------------------------------------------------------------


def test_to_builtins_gives_plain_json_types() -> None:
    op = _operation(random.Random(9))
    view = to_builtins(op)
    assert json.loads(json.dumps(view)) == view  # nothing json cannot carry as it is
    assert view["type"] == op.type.value and view["state"] == op.state.value
    assert isinstance(view["input_ys"], list) and isinstance(view["outputs"], list)
    assert view["id"] == op.id
    keyset = _keyset(random.Random(9))
    assert to_builtins(keyset)["keys"] == {str(a): k for a, k in keyset.keys.items()}
    assert to_builtins({"dir": Path("/tmp/x"), "s": frozenset({1})}) == {"dir": "/tmp/x",
                                                                         "s": [1]}
