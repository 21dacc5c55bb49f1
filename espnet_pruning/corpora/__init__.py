"""espnet_pruning.corpora."""
