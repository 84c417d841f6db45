"""The classic reference mixture-of-experts layer: a router picks the top-k experts of each
token and a Python loop runs every expert on the tokens routed to it (`torch.where`), so the
rows each expert sees depend on values and a shape-only trace cannot follow it."""

import torch
from torch import nn

input_shape = (32, 16)


class ExpertLoopMoE(nn.Module):
    def __init__(self, dim: int = 16, hidden: int = 24, experts: int = 4, top_k: int = 2) -> None:
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.SiLU(),
                          nn.Linear(hidden, dim, bias=False)) for _ in range(experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, picks = torch.topk(self.gate(x).softmax(dim=-1), self.top_k, dim=-1)
        out = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            token, slot = torch.where(picks == i)
            out.index_add_(0, token, expert(x[token]) * weights[token, slot, None])
        return out
