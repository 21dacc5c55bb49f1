"""espnet_pruning.bin."""
