"""A LLaMA-7B-shaped decoder analysed from its class: the closed form, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from costmodel import analyze
from costmodel.zoo import LlamaDecoder


def closed_form(layers: int, d: int, hidden: int, vocab: int, s: int) -> int:
    """q, k, v, o projections; gate, up, down; QK^T and PV; the LM head."""
    return layers * (4 * s * d * d + 3 * s * d * hidden + 2 * s * s * d) + s * d * vocab


def test_small_decoder_matches_closed_form_and_has_one_attention_per_layer() -> None:
    with torch.device("meta"):
        model = LlamaDecoder(vocab_size=320, dim=64, n_layers=3, n_heads=4, hidden_dim=176,
                             seq_len=48)
    analysis = analyze(model)
    assert analysis.total().madds == closed_form(3, 64, 176, 320, 48)
    assert sum(op["op_type"] == "Attention" for op in analysis.ops()) == 3
    assert not analysis.unsupported()


SCRIPT = """
import json, resource, torch
from costmodel import analyze
from costmodel.zoo import LlamaDecoder
with torch.device("meta"):
    model = LlamaDecoder()
total = analyze(model).total()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"madds": total.madds, "params": total.params, "peak": peak}))
"""


def test_llama_7b_from_its_class_in_under_2_gb() -> None:
    """Built on meta: no weights allocated; the whole analysis stays far below 2 GB."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["madds"] == closed_form(32, 4096, 11008, 32000, 2048)
    assert result["params"] == 6_738_415_616
    assert result["peak"] < 2 * 1024**3
