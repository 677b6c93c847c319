"""Rendering email templates: Close's `{{ contact.first_name }}`-style variables.

Close writes template variables as Django-like tags: `{{ lead.display_name }}`,
`{{ contact.first_name|default:"there" }}`. They are rendered here with Jinja2's
`SandboxedEnvironment`, after turning Django's `|default:"x"` into Jinja's `|default("x")`.

What a template may do is deliberately small, and checked on its syntax tree before it runs:
output, `{% if %}`/`{% elif %}`/`{% else %}`, comparisons, `and`/`or`/`not`, `~` and `+`
joins, the `is defined`/`is none` tests and a few text filters. No loops, assignments, macros,
calls, includes or arithmetic beyond `+`, so that no template can run long or build huge text.
The variables are plain dicts of strings; a name that is not in them (or any attribute of a
string, such as `''.__class__`) renders as empty text rather than failing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.runtime import Undefined
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.email.message import looks_like_html
from clove.errors import ValidationFailed, field_error, object_not_found
from clove.models import Contact, ContactEmail, CustomField, Lead, Organization, User

# --- The environment -----------------------------------------------------------------------------

ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.If,
    nodes.Name,
    nodes.Const,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Filter,
    nodes.Test,
    nodes.Keyword,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.CondExpr,
    nodes.Concat,
    nodes.Add,
)
NODE_NAMES: dict[type[nodes.Node], str] = {
    nodes.For: "{% for %}",
    nodes.Assign: "{% set %}",
    nodes.AssignBlock: "{% set %}",
    nodes.Macro: "{% macro %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% import %}",
    nodes.Extends: "{% extends %}",
    nodes.Block: "{% block %}",
    nodes.With: "{% with %}",
    nodes.Call: "Calling a function",
    nodes.Mul: "Multiplication",
    nodes.Pow: "Exponentiation",
}
ALLOWED_TESTS = frozenset({"defined", "undefined", "none", "string"})
# The context's top-level names; any other name is simply empty.
ROOTS = ("lead", "contact", "user", "organization")
MISSING = "missing_variable"
# Rendered text beyond this many characters is refused (values are repeated by the template).
MAX_RENDERED = 5_000_000


def _is_empty(value: Any) -> bool:
    return isinstance(value, Undefined) or value is None or value == ""


def _default(value: Any, fallback: Any = "", boolean: bool = True) -> Any:
    """Close's fallback: an empty, missing or null value takes `fallback` (Jinja's own
    `default` only replaces undefined values unless told `boolean=true`; both spellings here
    mean the same)."""
    del boolean
    return fallback if _is_empty(value) else value


def _text(name: str) -> Any:
    def apply(value: Any) -> Any:
        return getattr(str(value), name)()

    return apply


FILTERS: dict[str, Any] = {
    "default": _default,
    "d": _default,
    "upper": _text("upper"),
    "lower": _text("lower"),
    "title": _text("title"),
    "capitalize": _text("capitalize"),
    "trim": _text("strip"),
}


class TemplateEnvironment(SandboxedEnvironment):
    """A sandbox in which attribute and item access reach only the keys of plain dicts."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self.getitem(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict and isinstance(argument, str) and argument in obj:
            return obj[argument]
        name = argument if isinstance(argument, str) else None
        return self.undefined(obj=obj, name=name)


def _environment(autoescape: bool) -> TemplateEnvironment:
    env = TemplateEnvironment(autoescape=autoescape, undefined=ChainableUndefined)
    env.globals.clear()  # no range(), lipsum(), dict(), cycler(), joiner(), namespace()
    escape_filters = {"escape": env.filters["escape"], "e": env.filters["e"]}
    env.filters = {**FILTERS, **escape_filters}
    env.tests = {name: env.tests[name] for name in ALLOWED_TESTS}
    return env


PLAIN = _environment(autoescape=False)
HTML = _environment(autoescape=True)

# --- Checking and rendering ----------------------------------------------------------------------

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_DJANGO_DEFAULT = re.compile(
    r"""\|\s*(default|d)\s*:\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_][\w.]*)"""
)


def to_jinja(source: str) -> str:
    """Django's `|default:"x"` (or `|default:lead.name`) spelled the Jinja way, in tags only.
    Quotes that an HTML editor wrote as entities inside a tag (`&quot;there&quot;`) count as
    quotes."""
    return _TAG.sub(lambda tag: _DJANGO_DEFAULT.sub(r"|\1(\2)", _unquote(tag.group(0))), source)


def _unquote(tag: str) -> str:
    for entity, quote in (("&quot;", '"'), ("&#34;", '"'), ("&#39;", "'"), ("&#x27;", "'")):
        tag = tag.replace(entity, quote)
    return tag


def _problem(node: nodes.Node) -> str | None:
    """Why a parsed template is refused, or None."""
    for child in node.find_all(nodes.Node):
        if not isinstance(child, ALLOWED_NODES):
            kind = NODE_NAMES.get(type(child), type(child).__name__)
            return f"{kind} is not supported in email templates."
        if isinstance(child, nodes.Filter) and child.name not in PLAIN.filters:
            return f"Unknown filter {child.name!r}."
        if isinstance(child, nodes.Test) and child.name not in ALLOWED_TESTS:
            return f"Unknown test {child.name!r}."
    if not isinstance(node, ALLOWED_NODES):
        return f"{type(node).__name__} is not supported in email templates."
    return None


def _compile(field: str, source: str, env: TemplateEnvironment) -> Any:
    return _compiled(field, source, env is HTML)


@lru_cache(maxsize=512)
def _compiled(field: str, source: str, html: bool) -> Any:
    """The checked, compiled template (cached: a sequence step renders one template for
    thousands of contacts; templates are immutable, a failure is not cached)."""
    env = HTML if html else PLAIN
    text = to_jinja(source)
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        message = (exc.message or "invalid syntax").rstrip(".")
        line = exc.lineno
        raise field_error(field, f"Template syntax error on line {line}: {message}.") from None
    problem = _problem(tree)
    if problem:
        raise field_error(field, f"Template error: {problem}")
    # Names other than the context's are all empty, Jinja's own (`self`, `loop`, ...) included.
    for name in tree.find_all(nodes.Name):
        if name.name not in ROOTS:
            name.name = MISSING
    return env.from_string(tree)


def check_template(subject: str, body: str) -> None:
    """400 naming `subject` and/or `body` when either is not a valid template."""
    errors: dict[str, str] = {}
    for field, source, env in (("subject", subject, PLAIN), ("body", body, _body_env(body))):
        try:
            _compile(field, source, env)
        except ValidationFailed as exc:
            errors.update(exc.field_errors)
    if errors:
        raise ValidationFailed(field_errors=errors)


def _body_env(body: str) -> TemplateEnvironment:
    """Values going into an HTML body are escaped; a plain-text body takes them as they are."""
    return HTML if looks_like_html(body) else PLAIN


class Variables(dict[str, Any]):
    """A template context made of plain dicts and strings only, as `template_context` builds
    it: rendering uses it as it is instead of copying it again."""


def _render(field: str, source: str, env: TemplateEnvironment, context: Mapping[str, Any]) -> str:
    template = _compile(field, source, env)
    if isinstance(context, Variables):
        variables: Mapping[str, Any] = context  # built by this module: plain already
    else:
        variables = {name: _plain(context.get(name)) for name in ROOTS}
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > MAX_RENDERED:
                raise field_error(field, f"The rendered {field} is too long.")
            parts.append(chunk)
        return "".join(parts)
    except TemplateError as exc:
        raise field_error(field, f"Template error: {exc.message or type(exc).__name__}.") from None


def render_template(subject: str, body: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, body) with the variables of `context` (as `template_context` builds it) filled
    in. The subject is plain text; an HTML body gets its values HTML-escaped. A template that
    does not parse or uses what templates may not is a 400 naming `subject` or `body`."""
    errors: dict[str, str] = {}
    results = ["", ""]
    parts = (("subject", subject, PLAIN), ("body", body, _body_env(body)))
    for i, (field, source, env) in enumerate(parts):
        try:
            results[i] = _render(field, source, env, context)
        except ValidationFailed as exc:
            errors.update(exc.field_errors)
    if errors:
        raise ValidationFailed(field_errors=errors)
    return results[0], results[1]


def _plain(value: Any) -> Any:
    """A copy of `value` made only of dicts and strings (nothing else reaches a template)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return _as_text(value)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(_as_text(v) for v in value)
    return str(value)


# --- The variables -------------------------------------------------------------------------------


def template_context(
    session: Session,
    organization_id: str,
    lead_id: str | None,
    contact_id: str | None,
    user_id: str | None,
) -> dict[str, Any]:
    """The variables of a template rendered for a lead, one of its contacts and the sending
    user, as plain dicts of strings:

    * `lead`: `id, name, display_name, url, description, custom` (`custom` maps custom field
      names, and ids, to values: `{{ lead.custom.Industry }}`, `{{ lead.custom["Deal size"] }}`);
    * `contact`: `id, name, first_name, last_name, title, email, custom`;
    * `user`: `id, first_name, last_name, full_name, email`;
    * `organization`: `id, name`.

    `lead_id` may be None when `contact_id` is given (the contact's lead is used). Ids of
    another organization are 404s; a contact of another lead is a 400.
    """
    contact: Contact | None = None
    if contact_id is not None:
        contact = session.scalars(
            select(Contact).where(
                Contact.id == contact_id, Contact.organization_id == organization_id
            )
        ).first()
        if contact is None:
            raise object_not_found("Contact")
    lead: Lead | None = None
    if lead_id is not None or contact is not None:
        wanted = lead_id if lead_id is not None else contact.lead_id  # type: ignore[union-attr]
        lead = session.scalars(
            select(Lead).where(Lead.id == wanted, Lead.organization_id == organization_id)
        ).first()
        if lead is None:
            raise object_not_found("Lead")
    if contact is not None and lead is not None and contact.lead_id != lead.id:
        raise field_error("contact_id", f"The contact is not a contact of lead {lead.id}.")

    names = _custom_field_names(session, organization_id)
    organization = session.get(Organization, organization_id)
    user = session.get(User, user_id) if user_id else None
    context: dict[str, Any] = {
        "organization": {
            "id": organization_id,
            "name": organization.name if organization else "",
        },
        "user": _user_variables(user),
        "lead": {},
        "contact": {},
    }
    first_contact = contact
    if lead is not None and first_contact is None:
        first_contact = first_contact_of(session, lead.id)
    if lead is not None:
        context["lead"] = _lead_variables(
            lead, first_contact.name if first_contact else None, names
        )
    if contact is not None:
        email = first_email(session, contact.id)
        context["contact"] = _contact_variables(contact, email, names)
    return Variables({key: _plain(value) for key, value in context.items()})


def _lead_variables(
    lead: Lead, first_contact_name: str | None, names: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    return {
        "id": lead.id,
        "name": lead.name or "",
        "display_name": lead.name or first_contact_name or "",
        "url": lead.url or "",
        "description": lead.description or "",
        "custom": _custom(lead.custom, names.get("lead", {})),
    }


def _contact_variables(
    contact: Contact, email: str | None, names: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    full = (contact.name or "").strip()
    first, _, last = full.partition(" ")
    return {
        "id": contact.id,
        "name": full,
        "first_name": first,
        "last_name": last.strip(),
        "title": contact.title or "",
        "email": email or "",
        "custom": _custom(contact.custom, names.get("contact", {})),
    }


def template_contexts(
    session: Session, organization_id: str, items: Sequence[tuple[str, str, str | None]]
) -> list[dict[str, Any]]:
    """`template_context` for many (lead_id, contact_id, user_id) at once, in a fixed number of
    queries. Ids are trusted (the caller's own rows); a missing one leaves its variables empty."""
    lead_ids = {lead_id for lead_id, _, _ in items}
    contact_ids = {contact_id for _, contact_id, _ in items}
    user_ids = {user_id for _, _, user_id in items if user_id}
    # Plain rows (attribute access, no ORM identity map): this runs for every email a
    # sequence sends.
    lead_columns = (Lead.id, Lead.name, Lead.url, Lead.description, Lead.custom)
    leads: dict[str, Any] = {
        row.id: row for row in session.execute(select(*lead_columns).where(Lead.id.in_(lead_ids)))
    }
    contact_columns = (Contact.id, Contact.name, Contact.title, Contact.custom)
    contacts: dict[str, Any] = {
        row.id: row
        for row in session.execute(select(*contact_columns).where(Contact.id.in_(contact_ids)))
    }
    first_names = _first_contact_names(session, lead_ids)
    emails: dict[str, str] = {}
    for contact_id, email in session.execute(
        select(ContactEmail.contact_id, ContactEmail.email)
        .where(ContactEmail.contact_id.in_(contact_ids))
        .order_by(ContactEmail.contact_id, ContactEmail.position.desc(), ContactEmail.id.desc())
    ).tuples():
        emails[contact_id] = email  # the last one written per contact is its first email
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
    names = _custom_field_names(session, organization_id)
    organization = session.get(Organization, organization_id)
    org_variables = _plain(
        {"id": organization_id, "name": organization.name if organization else ""}
    )
    user_variables = {uid: _plain(_user_variables(user)) for uid, user in users.items()}
    out: list[dict[str, Any]] = []
    for lead_id, contact_id, user_id in items:
        lead, contact = leads.get(lead_id), contacts.get(contact_id)
        # Shared parts are made plain once; a sequence renders many emails for one sender.
        lead_vars = _lead_variables(lead, first_names.get(lead_id), names) if lead else {}
        contact_vars = _contact_variables(contact, emails.get(contact_id), names) if contact else {}
        context = {
            "organization": org_variables,
            "user": user_variables.get(user_id or "", {}),
            "lead": _plain(lead_vars),
            "contact": _plain(contact_vars),
        }
        out.append(Variables(context))
    return out


def _first_contact_names(session: Session, lead_ids: set[str]) -> dict[str, str | None]:
    """lead id -> the name of its first contact."""
    found: dict[str, str | None] = {}
    rows = session.execute(
        select(Contact.lead_id, Contact.name)
        .where(Contact.lead_id.in_(lead_ids))
        .order_by(Contact.lead_id, Contact.date_created.desc(), Contact.id.desc())
    ).tuples()
    for lead_id, name in rows:
        found[lead_id] = name  # the last one per lead is its first contact
    return found


def first_contact_of(session: Session, lead_id: str) -> Contact | None:
    """A lead's first contact, in the order a lead lists its contacts."""
    return session.scalars(
        select(Contact).where(Contact.lead_id == lead_id).order_by(Contact.date_created, Contact.id)
    ).first()


def first_email(session: Session, contact_id: str) -> str | None:
    return session.scalars(
        select(ContactEmail.email)
        .where(ContactEmail.contact_id == contact_id)
        .order_by(ContactEmail.position, ContactEmail.id)
    ).first()


def _user_variables(user: User | None) -> dict[str, str]:
    if user is None:
        return {}
    return {
        "id": user.id,
        "first_name": user.first_name or "",
        "last_name": user.last_name or "",
        "full_name": f"{user.first_name or ''} {user.last_name or ''}".strip(),
        "email": user.email,
    }


def _custom_field_names(session: Session, organization_id: str) -> dict[str, dict[str, str]]:
    """object type -> field id -> field name."""
    found: dict[str, dict[str, str]] = {}
    rows = session.execute(
        select(CustomField.object_type, CustomField.id, CustomField.name).where(
            CustomField.organization_id == organization_id
        )
    ).tuples()
    for object_type, field_id, name in rows:
        found.setdefault(object_type, {})[field_id] = name
    return found


def _custom(values: dict[str, Any] | None, names: Mapping[str, str]) -> dict[str, Any]:
    """Custom values by field name, and by field id (for names that no longer resolve)."""
    by_id = dict(values or {})
    by_name = {names[k]: v for k, v in by_id.items() if k in names}
    return {**by_id, **by_name}
