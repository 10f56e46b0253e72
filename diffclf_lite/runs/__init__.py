"""Whole datasets: zero-shot evaluation with one record per image (`evaluate`, `evaluate_clip`), resumable and
shardable records (`records`), and the `diffclf` command line (`cli`)."""
