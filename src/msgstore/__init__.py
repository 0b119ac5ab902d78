"""msgstore: an IMAP-first mail store. See docs/architecture.md."""

__version__ = "0.1.0"
