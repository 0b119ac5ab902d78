"""Parsers for SEARCH (RFC 9051 §6.4.4, ESEARCH RFC 4731, SEARCHRES RFC 5182), SORT (RFC
5256, ESORT RFC 5267, DISPLAYFROM/DISPLAYTO RFC 5957) and THREAD (RFC 5256)."""

from __future__ import annotations

from typing import Final

from msgstore.imap.syntax.args import (
    SearchArgs,
    SearchReturn,
    SortArgs,
    SortCriterion,
    SortKey,
    ThreadAlgorithm,
    ThreadArgs,
)
from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.grammar import ParseContext, TokenReader
from msgstore.imap.syntax.search import charset, search_keys, search_program
from msgstore.imap.syntax.tokens import AtomToken, ListToken

_RETURNS: Final = {r.value: r for r in SearchReturn}
_SORT_KEYS: Final = {k.value: k for k in SortKey}
_THREAD_ALGS: Final = {a.value: a for a in ThreadAlgorithm}


def _return_opts(reader: TokenReader) -> frozenset[SearchReturn] | None:
    """``[SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"]``."""
    if reader.peek_atom() != b"RETURN":
        return None
    reader.skip()
    tok = reader.take("search return options")
    if not isinstance(tok, ListToken):
        raise BadCommandError("Invalid search return options")
    out: set[SearchReturn] = set()
    for item in tok.items:
        opt = _RETURNS.get(item.value.upper()) if isinstance(item, AtomToken) else None
        if opt is None:
            raise BadCommandError("Unknown search return option")
        out.add(opt)
    return frozenset(out)


def parse_search(reader: TokenReader, ctx: ParseContext) -> SearchArgs:
    """``SEARCH [search-return-opts] SP search-program``."""
    returns = _return_opts(reader)
    cs, key = search_program(reader, ctx)
    return SearchArgs(key, cs, returns)


def parse_sort(reader: TokenReader, ctx: ParseContext) -> SortArgs:
    """``SORT [search-return-opts] SP "(" sort-criterion *(SP ...) ")" SP charset
    1*(SP search-key)``."""
    returns = _return_opts(reader)
    tok = reader.take("sort criteria")
    if not isinstance(tok, ListToken) or not tok.items:
        raise BadCommandError("Invalid sort criteria")
    criteria: list[SortCriterion] = []
    reverse = False
    for item in tok.items:
        word = item.value.upper() if isinstance(item, AtomToken) else b""
        if word == b"REVERSE" and not reverse:
            reverse = True
            continue
        key = _SORT_KEYS.get(word)
        if key is None:
            raise BadCommandError("Unknown sort criterion")
        criteria.append(SortCriterion(key, reverse))
        reverse = False
    if reverse:
        raise BadCommandError("Missing sort key after REVERSE")
    cs = charset(reader.take("charset"))
    key_tree = search_keys(reader.rest(), ctx)
    return SortArgs(tuple(criteria), cs, key_tree, returns)


def parse_thread(reader: TokenReader, ctx: ParseContext) -> ThreadArgs:
    """``THREAD SP thread-alg SP charset 1*(SP search-key)``."""
    tok = reader.take("threading algorithm")
    alg = _THREAD_ALGS.get(tok.value.upper()) if isinstance(tok, AtomToken) else None
    if alg is None:
        raise BadCommandError("Unknown threading algorithm")
    cs = charset(reader.take("charset"))
    return ThreadArgs(alg, cs, search_keys(reader.rest(), ctx))
