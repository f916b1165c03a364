"""One module per rule primitive."""
