"""Splitting a swap under the mint's per-request array cap: pure functions, no IO.

A mint caps the inputs, outputs and Ys of one request (NUT-06 ``max_array_length``;
Nutshell: 1000, 422 above it). A send or receive with more inputs than that swaps in
several requests, each a consecutive slice of the operation's inputs and outputs
(:class:`~coco_actors.records.SwapBatch`), each paying the NUT-02 fee of its own
inputs. The operation actors run the batches one by one, committing after each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from coco_actors.records import Operation, SwapBatch
from coco_actors.selection import FeeOf, Select, Selection
from coco_actors.wire import Proof

T = TypeVar("T")

__all__ = ["BatchSlice", "batch_slices", "batched_fee", "batched_select", "chunked", "slices_of"]


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (at least one slice)."""
    if size <= 0:
        raise ValueError("batch size must be positive")
    return [items[i:i + size] for i in range(0, len(items), size)] or [items[:0]]


def batched_fee(fee_of: FeeOf, cap: int) -> FeeOf:
    """The fee of proofs swapped in slices of ``cap``: each request pays for its own
    inputs, so the fee is the sum over slices (at most one sat per slice above one
    request's)."""
    return lambda proofs: sum(fee_of(c) for c in chunked(proofs, cap))


def batched_select(select: Select, cap: int) -> Select:
    """``select`` with the fee of a swap split in slices of ``cap`` (the proofs it returns
    are sliced in the order it returns them)."""
    def run(proofs: Sequence[Proof], amount: int, fee_of: FeeOf) -> Selection | None:
        return select(proofs, amount, batched_fee(fee_of, cap))
    return run


@dataclass(frozen=True, slots=True)
class BatchSlice:
    """Where one batch's inputs and outputs are in its operation's tuples."""

    index: int
    batch: SwapBatch
    inputs: slice
    outputs: slice


def batch_slices(op: Operation) -> list[BatchSlice]:
    """Every batch of ``op`` with its slices; an operation that is not split is one
    batch of all its inputs and outputs."""
    n_inputs = len(op.input_ys) or len(op.inputs)
    if not op.batches:
        return [BatchSlice(0, SwapBatch(n_inputs, len(op.outputs), op.send_output_count),
                           slice(0, n_inputs), slice(0, len(op.outputs)))]
    return slices_of(op.batches)


def slices_of(batches: Sequence[SwapBatch]) -> list[BatchSlice]:
    """The slices of consecutive ``batches``."""
    result: list[BatchSlice] = []
    i = o = 0
    for index, b in enumerate(batches):
        result.append(BatchSlice(index, b, slice(i, i + b.inputs), slice(o, o + b.outputs)))
        i += b.inputs
        o += b.outputs
    return result
