"""The IMAP server: IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) with their extensions.

Input flows through four stages, each testable alone with bytes and no server:

    socket bytes
      │  framer.Framer.feed()            sans-I/O; limits checked as octets arrive;
      ▼                                  literals above 64 KiB spilled to temp files
    CommandReady(CommandUnit)            lines + literals (bytes or LiteralFile)
      │  syntax.command.read_name()       tag and name read lexically (state checked),
      │  syntax.command.parse_arguments() then:
      │    syntax.tokens.tokenize()      iterative tokenizer -> token tree
      │    PARSERS[name](TokenReader, ParseContext)
      │      syntax.grammar / .search / .fetchatt   shared productions
      ▼
    syntax.args.Command(tag, name, args)  one frozen dataclass per command's arguments

and output is typed too: handlers return values from ``syntax.responses`` (status responses,
response codes in their RFC spelling, untagged data) and the writer encodes them for the
session's mode (modified UTF-7 or UTF-8 names).

``syntax/`` is pure: stdlib and ``msgstore.core`` only, no storage, no asyncio. ``framer.py``
writes spill files but does no network I/O.

**How the session layer uses them** (``connection.py``, ``session.py``, ``registry.py``,
``selected.py``, ``writer.py``, ``commands/``). Per connection it owns one ``Framer``
(limits from config) and a ``ParseContext`` that follows ENABLE (UTF8=ACCEPT, IMAP4rev2). Its
read loop feeds received octets to the framer and acts on each event in order:

- ``SendContinuation``: write ``+ Ready``.
- ``FramingError``: write the tagged (or untagged ``* BAD``) reply it carries; if ``fatal``,
  write ``* BYE`` and close.
- ``CommandReady``: outside IDLE/AUTHENTICATE, ``parse_command``; on ``ParseError`` reply per
  ``syntax.errors`` (``InvalidTagError`` → ``* BAD``, others tagged with ``status`` and
  ``code``) and count consecutive BADs (10 → ``BYE``, the ALPACA defence). Otherwise the
  command table (``registry.py``) checks the state, then calls the handler with ``args``;
  finally ``framer.discard_unit(unit)`` removes spill files the handler did not take over.
- During IDLE a unit is either ``DONE`` (``syntax.command.is_idle_done``) or ends IDLE with
  ``BAD``; during AUTHENTICATE each unit is a SASL response
  (``syntax.parse_anystate.parse_sasl_response``; ``None`` means the client cancelled).
- After STARTTLS and COMPRESS the framer pauses. For STARTTLS the session refuses and closes
  if ``framer.pending_bytes()`` is non-zero (octets pipelined before the handshake are the
  injection attack), else upgrades and calls ``framer.resume()``; for COMPRESS it passes
  ``framer.take_pending()`` through the inflater and feeds the result back.
- On disconnect, ``framer.close()`` deletes the spill file of a half-received literal.
"""
