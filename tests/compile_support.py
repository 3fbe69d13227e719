"""What torch.compile will see of one block: shared by the real-RoPE tests of Z-Image and Qwen-Image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class BlockTrace:
    graphs: list[Any]  # the FX graphs dynamo handed to the backend (one = no graph break)
    args: tuple[Any, ...]  # the block's inputs in the eager run
    kwargs: dict[str, Any]
    compiled_out: Any
    eager_out: Any

    def complex_nodes(self) -> list[str]:
        """Nodes of the traced graphs whose example value is a complex tensor."""
        return [node.format_node() for gm in self.graphs for node in gm.graph.nodes
                if isinstance(node.meta.get("example_value"), torch.Tensor) and node.meta["example_value"].is_complex()]


def trace_block(block: nn.Module, run_model: Callable[[], Any]) -> BlockTrace:
    """Run the model once eagerly to capture ``block``'s inputs, then compile the block alone
    (fullgraph, recording backend) and run it on them beside the eager block."""
    graphs: list[Any] = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    seen: dict[str, Any] = {}
    hook = block.register_forward_pre_hook(lambda m, a, k: seen.setdefault("in", (a, k)), with_kwargs=True)
    try:
        run_model()
    finally:
        hook.remove()
    args, kwargs = seen["in"]
    torch._dynamo.reset()
    try:
        compiled = torch.compile(block, backend=backend, fullgraph=True, dynamic=False)
        with torch.no_grad():
            got = compiled(*args, **kwargs)
            want = block(*args, **kwargs)
    finally:
        torch._dynamo.reset()
    return BlockTrace(graphs, args, kwargs, got, want)
