"""Channel-dependency analysis from the torch.fx-traced graph (see docs/thinning.md)."""

from prunecli.graph.build import build_dependency_graph
from prunecli.graph.model import ChannelGroup, DependencyGraph, Member

__all__ = ["ChannelGroup", "DependencyGraph", "Member", "build_dependency_graph"]
