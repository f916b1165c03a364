"""goldsmith: forge and prove a hardened gold image for NanoClaw agent hosts."""

__version__ = "0.1.0"
