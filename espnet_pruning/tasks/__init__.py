"""ESPnet tasks of espnet_pruning."""
