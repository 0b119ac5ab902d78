"""Delivery: the one pipeline every door (LMTP, SMTP, ``msgstore deliver``, migration) uses
to put a received message into local accounts (pipeline.py). Forwarding and the relay queue
join it later."""
