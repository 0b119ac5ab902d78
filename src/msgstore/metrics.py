"""Process metrics (Prometheus), defined once for every service; served at ``/metrics``.

Sits below the services so that protocols, delivery and auth can all count; imports nothing
of ours. See docs/architecture.md (Metrics).
"""
