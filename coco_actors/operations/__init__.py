"""One actor per operation, each owning its saga's state machine."""

from coco_actors.operations.base import MintContext, OperationActor, OperationDeps
from coco_actors.operations.mint import MintOperationActor
from coco_actors.operations.receive import ReceiveOperationActor
from coco_actors.operations.send import SendOperationActor

__all__ = ["MintContext", "MintOperationActor", "OperationActor", "OperationDeps",
           "ReceiveOperationActor", "SendOperationActor"]
