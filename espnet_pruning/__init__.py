"""espnet_pruning: task-specific subnetworks in a multi-task Whisper SLU model."""

__version__ = "0.1.0"
