"""The domain core: ids, names, flags, rights, quota, addresses, errors. No I/O here."""
