"""Storage: the backend interface (base.py), ACL and namespaces above it (access.py), and the
backends (local/, postgres/). Protocol and service code imports only ``storage.base`` and
``storage.access``; ``storage.open`` picks a backend from the configuration."""
