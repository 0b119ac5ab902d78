"""Authentication services: password hashes (passwords.py); SASL and throttling build on it.

May import ``msgstore.core``; never protocol packages. Hashing is CPU- and memory-bound
(tens of milliseconds): callers on the event loop run it in the blocking-work pool.
"""
