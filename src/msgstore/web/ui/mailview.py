"""A message of a POP-only maildrop, MIME-decoded for the browser.

The store keeps messages byte-exact and parses them once at delivery for IMAP; this page is
not a protocol path, so it decodes at read time with the standard library's ``email``
package (``policy.default``): the main header fields decoded (RFC 2047 words), the text
part decoded (transfer encoding, then charset), the attachments listed with their names and
sizes. Nothing of the message ever reaches the page as markup:

- a text/html-only message is shown as the *text* of its HTML (:class:`_HtmlText` drops
  script, style and head; tags become line breaks), escaped like any other text;
- an attachment is downloaded, never displayed: ``Content-Disposition: attachment``, type
  ``application/octet-stream``, and a CSP that sandboxes it (``user.py``).

Parsing is CPU work on a whole message: callers run :func:`decode` and :func:`part_of` in a
worker thread, on at most ``[web] max_decoded_message`` octets.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html.parser
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Final

from msgstore.mime.headers import decode_words

#: The header fields shown above the text, in this order.
SHOWN_FIELDS: Final = ("From", "To", "Cc", "Date", "Subject")
#: Characters of text shown (decoded text or the text of the HTML); the rest is cut.
MAX_TEXT_CHARS: Final = 1024 * 1024
#: Multipart levels looked into; deeper parts are offered as one attachment.
MAX_DEPTH: Final = 20
#: Characters of one header field shown.
MAX_FIELD_CHARS: Final = 4096
#: Tags whose content is not text (HTML to text).
_SKIPPED: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})
#: Tags that stand apart as paragraphs, and tags that start a line (HTML to text).
_PARAGRAPHS: Final = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol",
        "dl", "hr", "section", "article", "header", "footer", "address", "form", "fieldset",
        "figure", "main", "nav",
    }
)  # fmt: skip
_LINES: Final = frozenset({"br", "div", "tr", "li", "dt", "dd"})
_UNSAFE_NAME: Final = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


@dataclass(frozen=True, slots=True)
class Attachment:
    """One part offered for download: ``index`` numbers the parts in :meth:`Message.walk`
    order, which is what :func:`part_of` takes back."""

    index: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Decoded:
    """What the message page shows."""

    fields: tuple[tuple[str, str], ...]  # (name, decoded value) of SHOWN_FIELDS present
    subject: str
    date: dt.datetime | None  # the Date field, if it parses
    text: str
    from_html: bool  # ``text`` is the text of an HTML part
    cut: bool  # ``text`` was longer than MAX_TEXT_CHARS
    attachments: tuple[Attachment, ...]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _field(message: Message, name: str) -> str | None:
    """A header field decoded; a field ``policy.default`` cannot read is shown with its
    RFC 2047 words decoded as far as they go (mime/headers.py)."""
    try:
        value = message.get(name)
        text = None if value is None else str(value)
    except Exception:  # a malformed field: the policy's header classes may raise
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), None)
        text = None if raw is None else decode_words(raw.encode("ascii", "surrogateescape"))
    if text is None:
        return None
    return " ".join(text.split())[:MAX_FIELD_CHARS]


def _date(message: Message) -> dt.datetime | None:
    try:
        header = message.get("Date")
        value = getattr(header, "datetime", None)
    except Exception:
        return None
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def text_of(part: Message) -> str:
    """A text part's content: transfer encoding undone, then its charset (an unknown charset
    is read as UTF-8 with replacement characters)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


class _HtmlText(html.parser.HTMLParser):
    """The text of an HTML document: what a reader would see, without any markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif tag == "pre":
            self._pre += 1
        if tag in _PARAGRAPHS:
            self.out.append("\n\n")
        elif tag in _LINES:
            self.out.append("\n")
        elif tag == "td":
            self.out.append(" ")
        if tag == "li":
            self.out.append("• ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _PARAGRAPHS or tag in _LINES:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _PARAGRAPHS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.out.append(data if self._pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = (line.strip() for line in "".join(self.out).split("\n"))
        text = "\n".join(lines)
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_text(markup: str) -> str:
    """The visible text of ``markup`` (never markup: tags, scripts and styles are dropped)."""
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    return parser.text()


def _filename(part: Message, index: int) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    cleaned = _UNSAFE_NAME.sub("_", name or "").strip(" .")[:200]
    if cleaned:
        return cleaned
    subtype = part.get_content_subtype()
    extension = {"plain": "txt", "rfc822": "eml"}.get(subtype, subtype)
    return f"part-{index}.{extension}"[:200]


def content_of(part: Message) -> bytes:
    """A leaf part's content: transfer encoding undone; an attached message as it is."""
    if part.get_content_maintype() == "message" and part.is_multipart():
        inner = part.get_payload(0)
        return inner.as_bytes() if isinstance(inner, Message) else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _leaves(message: Message) -> list[tuple[int, Message, bool]]:
    """The parts that are not multiparts (an attached message is one part), each with its
    number in depth-first order and whether it lies inside a multipart/alternative; at most
    :data:`MAX_DEPTH` levels deep."""
    out: list[tuple[int, Message, bool]] = []
    stack: list[tuple[Message, bool, int]] = [(message, False, 0)]
    number = 0
    while stack:
        part, alternative, depth = stack.pop()
        index, number = number, number + 1
        if part.get_content_maintype() == "multipart" and depth < MAX_DEPTH:
            payload = part.get_payload()
            children = (
                [c for c in payload if isinstance(c, Message)] if isinstance(payload, list) else []
            )
            inner = alternative or part.get_content_subtype() == "alternative"
            stack.extend((c, inner, depth + 1) for c in reversed(children))
        else:
            out.append((index, part, alternative))
    return out


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment" or bool(part.get_filename())
    except Exception:
        return True


def _body(message: EmailMessage) -> Message | None:
    try:
        return message.get_body(preferencelist=("plain", "html"))
    except Exception:
        return None


def decode(data: bytes) -> Decoded:
    """The page's view of a message (see the module docstring)."""
    message = parse(data)
    fields = tuple(
        (name, value) for name in SHOWN_FIELDS if (value := _field(message, name)) is not None
    )
    body = _body(message)
    if body is None and not message.is_multipart() and message.get_content_maintype() == "text":
        body = message  # text/enriched, text/calendar...: still text
    text, from_html = "", False
    if body is not None:
        content = text_of(body)
        if body.get_content_subtype() == "html":
            text, from_html = html_to_text(content), True
        else:
            text = content.replace("\r\n", "\n")
    attachments: list[Attachment] = []
    for index, part, alternative in _leaves(message):
        if part is body:
            continue
        if (
            alternative
            and body is not None
            and part.get_content_maintype() == "text"
            and not _is_attachment(part)
        ):
            continue  # another form of the text shown (the text/html beside text/plain)
        attachments.append(
            Attachment(
                index, _filename(part, index), part.get_content_type(), len(content_of(part))
            )
        )
    return Decoded(
        fields=fields,
        subject=dict(fields).get("Subject", ""),
        date=_date(message),
        text=text[:MAX_TEXT_CHARS],
        from_html=from_html,
        cut=len(text) > MAX_TEXT_CHARS,
        attachments=tuple(attachments),
    )


def part_of(data: bytes, index: int) -> tuple[str, bytes] | None:
    """The file name and decoded content of part ``index`` (an :class:`Attachment`'s), or
    None if the message has no such part."""
    for number, part, _ in _leaves(parse(data)):
        if number == index:
            return _filename(part, index), content_of(part)
    return None
