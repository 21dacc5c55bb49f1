"""espnet_pruning.whisper."""
