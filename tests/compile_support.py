"""Shared by the real-RoPE tests of Z-Image and Qwen-Image: what torch.compile will see of one block,
and that no complex RoPE runs while the rewrite is installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest
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


def check_no_complex_rope(monkeypatch: pytest.MonkeyPatch, model: nn.Module, run_model: Callable[[], torch.Tensor]) -> None:
    """With the rewrite installed no ``torch.view_as_complex`` runs; after uninstalling, stock's does
    (so the check can fail)."""
    from zaoxiang.engine.fused import uninstall_real_rope

    def forbidden(*args, **kwargs):
        raise AssertionError("complex RoPE ran")

    monkeypatch.setattr(torch, "view_as_complex", forbidden)
    assert torch.isfinite(run_model()).all()
    uninstall_real_rope(model)
    with pytest.raises(AssertionError, match="complex RoPE ran"):
        run_model()


def signalled_model(cls: type[nn.Module], config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    """A tiny diffusers transformer, seeded, with noise on every parameter: diffusers zero-inits some
    layers, and a wrong RoPE must show in the output."""
    torch.manual_seed(0)
    model = cls(**config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.to(dtype)
