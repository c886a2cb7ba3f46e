"""One actor per operation, each owning its saga's state machine.

Each saga is a plain class with the logic (``SendOperation``) and a thin actor that
mixes it in (``SendOperationActor``), with a typed proxy (``SendOperationProxy``).
"""

from coco_actors.operations.base import (
    KeysetRefresh,
    LiveKeysets,
    MintContext,
    OperationActor,
    OperationBase,
    OperationDeps,
    OperationProxy,
    RestListener,
    Watched,
)
from coco_actors.operations.consolidate import (
    ConsolidateOperation,
    ConsolidateOperationActor,
    ConsolidateOperationProxy,
)
from coco_actors.operations.melt import MeltOperation, MeltOperationActor, MeltOperationProxy
from coco_actors.operations.mint import MintOperation, MintOperationActor, MintOperationProxy
from coco_actors.operations.receive import (
    ReceiveOperation,
    ReceiveOperationActor,
    ReceiveOperationProxy,
)
from coco_actors.operations.send import SendOperation, SendOperationActor, SendOperationProxy
from coco_actors.operations.transfer import (
    Legs,
    TransferOperation,
    TransferOperationActor,
    TransferOperationProxy,
)

__all__ = ["ConsolidateOperation", "ConsolidateOperationActor", "ConsolidateOperationProxy",
           "KeysetRefresh", "Legs", "LiveKeysets", "MeltOperation", "MeltOperationActor",
           "MeltOperationProxy", "MintContext", "MintOperation", "MintOperationActor",
           "MintOperationProxy", "OperationActor", "OperationBase", "OperationDeps",
           "OperationProxy", "ReceiveOperation", "ReceiveOperationActor", "ReceiveOperationProxy",
           "RestListener", "SendOperation", "SendOperationActor", "SendOperationProxy",
           "TransferOperation", "TransferOperationActor", "TransferOperationProxy", "Watched"]
