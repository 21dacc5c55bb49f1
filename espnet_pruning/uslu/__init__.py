"""The UniverSLU model and its data preprocessing for ESPnet."""
