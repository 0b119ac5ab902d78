"""The management operations: declarations, validation, and runs against a real store."""
