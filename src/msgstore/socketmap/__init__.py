"""The Postfix socketmap lookup service: recipient validation for an MTA in front.

Postfix asks whether an address is deliverable before it accepts a RCPT, so an unknown
recipient is refused in the SMTP dialogue instead of being queued and bounced later (the
backscatter problem). The protocol is socketmap_table(5), Sendmail's socket map: one netstring
request ``name key`` per lookup, one netstring reply ``OK value``, ``NOTFOUND ``, ``TEMP
reason``, ``TIMEOUT reason`` or ``PERM reason``, many lookups per connection.

    netstring.py   sans-I/O netstring framing (djb's netstrings.txt), with a size cap
    maps.py        the tables, answered by the delivery pipeline's own RCPT check
    service.py     ``start(config, backend, listeners)``: the SERVICES entry for
                   ``[delivery] socketmap_listen``

The answers come from ``DeliveryPipeline.check``, the function the LMTP and SMTP RCPT
commands call, so Postfix and the LMTP server never disagree about a recipient. Postfix setup:
docs/postfix.md.
"""
