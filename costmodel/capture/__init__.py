"""Capture: a TARGET becomes a model and its inputs (spec, load, hf, freeargs), the model runs
once under a recorder on shape-only tensors (trace, trace_train, execute, symdims, widthscope),
and the recording becomes a networkx op graph (graph); inductor hands the recording to
torch.compile's inductor and reads the kernels its scheduler makes. Nothing here knows what an
op costs beyond asking the formula registry which ops it has."""
