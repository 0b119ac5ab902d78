"""HTML forms built from an operation's declared parameters, and operations built from forms.

The web pages declare no parameters of their own (STYLE.md §7): a form for ``account add`` is
the list of ``account add``'s :class:`~msgstore.management.operation.Param`, and the values a
browser sends are parsed by each parameter's own ``parse`` (the text form the CLI accepts), so
the web reports exactly the messages every other face reports.

Widgets: ``bool`` -> checkbox; ``bool | None`` -> select (unchanged / on / off); an enum ->
select of its values; :class:`Secret` -> password input; anything else -> text input.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.operation import Limit, Operation, OperationSpec, Param, Secret


@dataclass(frozen=True, slots=True)
class Field:
    """One form field as templates render it."""

    name: str
    label: str
    help: str
    widget: str  # "text", "password", "checkbox", "select"
    required: bool
    value: str
    choices: tuple[tuple[str, str], ...]  # (value, label) for selects
    error: str


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _default_text(param: Param) -> str:
    value = param.default
    if value is None or param.required:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Limit):
        return str(value)
    if isinstance(value, bool):
        return "on" if value else ""
    return str(value)


def fields_of(
    spec: OperationSpec,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    omit: frozenset[str] = frozenset(),
) -> list[Field]:
    """The fields of a form for ``spec``, filled with ``values`` (as sent) or the defaults."""
    out: list[Field] = []
    for param in spec.params:
        if param.name in omit:
            continue
        given = None if values is None else values.get(param.name)
        text = _default_text(param) if given is None else given
        choices: tuple[tuple[str, str], ...] = ()
        if param.type is bool and param.optional:
            widget = "select"
            on, off = param.switch or ("yes", "no")
            choices = (("", "(unchanged)"), ("on", on), ("off", off))
        elif param.type is bool:
            widget = "checkbox"
        elif param.choices is not None:
            widget = "select"
            lead = (("", "(unchanged)"),) if param.optional else ()
            choices = lead + tuple((c, c) for c in param.choices)
        elif param.type is Secret:
            widget = "password"
            text = ""
        else:
            widget = "text"
        out.append(
            Field(
                name=param.name,
                label=_label(param.name),
                help=param.help,
                widget=widget,
                required=param.required,
                value=text,
                choices=choices,
                error="" if errors is None else errors.get(param.name, ""),
            )
        )
    return out


class FormError(Exception):
    """A form that does not make an operation: a message per field (and/or for the form)."""

    def __init__(self, fields: Mapping[str, str], message: str = "") -> None:
        super().__init__(message or "; ".join(fields.values()))
        self.fields = dict(fields)
        self.message = message or "Please correct the fields marked below."


def build_operation(
    spec: OperationSpec, form: Mapping[str, str], fixed: Mapping[str, object] | None = None
) -> Operation:
    """The operation ``form`` describes; ``fixed`` values (from the URL or the session) win.

    Raises:
        FormError: with the reason for each field that could not be parsed, or the
            operation's own PARAMS message.
    """
    values: dict[str, object] = dict(fixed or {})
    errors: dict[str, str] = {}
    for param in spec.params:
        if param.name in values:
            continue
        raw = form.get(param.name)
        text = "" if raw is None else raw
        try:
            if param.type is bool and not param.optional:
                values[param.name] = text not in ("", "off")
            elif param.type is bool:
                if text in ("on", "off"):
                    values[param.name] = text == "on"
            elif param.type is Secret:
                if text or param.required:
                    if not text:
                        raise StoreError(ErrorKind.PARAMS, "This field is required")
                    values[param.name] = Secret(text)
            elif text.strip() == "":
                if param.required:
                    raise StoreError(ErrorKind.PARAMS, "This field is required")
            else:
                values[param.name] = param.parse(text)
        except StoreError as exc:
            if exc.kind is not ErrorKind.PARAMS:
                raise
            errors[param.name] = exc.public
    if errors:
        raise FormError(errors)
    try:
        return spec.build(values)
    except StoreError as exc:
        if exc.kind is not ErrorKind.PARAMS:
            raise
        raise FormError({}, exc.public) from exc
    except TypeError as exc:  # a field the form lacks and the operation requires
        raise FormError({}, f"Incomplete form: {exc}") from exc


def result_rows(result: object) -> list[dict[str, object]]:
    """A result as table rows: a list of dataclasses -> one dict per item, fields in order."""
    items = result if isinstance(result, list | tuple) else [result]
    rows: list[dict[str, object]] = []
    for item in items:
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            rows.append({f.name: getattr(item, f.name) for f in dataclasses.fields(item)})
        elif isinstance(item, Mapping):
            rows.append({str(k): v for k, v in item.items()})
        else:
            rows.append({"value": item})
    return rows
