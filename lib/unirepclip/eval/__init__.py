"""Evaluation, one module per task in CLIP_benchmark's manner: metrics, zero-shot classification,
retrieval, and probes."""
