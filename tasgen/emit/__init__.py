"""Plan -> nn.Modules: the bridge, the assistant and the DistillationSystem."""

from tasgen.emit.assistant import Assistant
from tasgen.emit.bridge import Bridge, BridgeError
from tasgen.emit.ofa import ExitBranch, OFASystem
from tasgen.emit.staged import StagedModel
from tasgen.emit.system import DistillationSystem

__all__ = ["Assistant", "Bridge", "BridgeError", "DistillationSystem", "ExitBranch", "OFASystem", "StagedModel"]
