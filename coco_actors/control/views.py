"""JSON views of library values: the one place that turns them into JSON-able data.

Tokens stay out of every view (an operation's token is added by the one endpoint
that shows it); stored-only fields (outputs, secrets) never appear.
"""

from __future__ import annotations

import enum
from dataclasses import fields, is_dataclass
from pathlib import Path

from coco_actors.audit import AuditReport
from coco_actors.proof_ledger import MintBalance
from coco_actors.records import Operation


def op_view(op: Operation, *, token: bool = False) -> dict[str, object]:
    """``Operation.public()``, without the token unless asked (a pending send shows it)."""
    view: dict[str, object] = op.public()
    if not token:
        view.pop("token", None)
    return view


def jsonable(value: object) -> object:
    """``value`` as JSON-able data: dataclasses as objects, enums as their values."""
    if isinstance(value, Operation):
        return op_view(value)
    if isinstance(value, MintBalance):
        return {"spendable": value.spendable, "reserved": value.reserved,
                "pending": value.pending, "total": value.total}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def claim_view(result: object) -> dict[str, object]:
    """The answer to one claimed payment (``coco.requests.claim``): the request id, the
    amount received and the receive operation's id, as the payer and the payee see it."""
    view = jsonable(result)
    if not isinstance(view, dict):
        raise TypeError(f"a claim answered {type(result).__name__}, not a record")
    return view


def audit_view(report: AuditReport) -> dict[str, object]:
    """The JSON of a solvency report (``coco.audit``): its dataclasses' field names, as
    the README documents them. Proof Ys appear (public hashes), never a secret."""
    view = jsonable(report)
    if not isinstance(view, dict):
        raise TypeError(f"an audit answered {type(report).__name__}, not a report")
    return view
