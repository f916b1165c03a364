"""goldsmith: forge and prove a hardened gold image for NanoClaw agent hosts."""

__version__ = "0.1.0"

#: the shipped profile commands use when none is given
DEFAULT_PROFILE = "nanoclaw-debian13"
