"""Speed measured on this machine: `throughput` times a model with care, `guidelines` re-runs
the ShuffleNetV2 paper's four experiments (`costmodel bench guidelines`)."""
