"""The delivery pipeline against a real local store."""
