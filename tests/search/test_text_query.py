"""The legacy text query language (close-search.md A2) compiled into the Advanced Filtering tree:
the real-world examples T1-T10 of Part E, grammar (precedence, keywords, quoting), every
operator and relative date, `in (...)`, `not`, directives, errors, and `SessionNames` against the
test database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from clove.errors import ValidationFailed
from clove.kit.ids import new_id
from clove.models import CustomField, SavedSearch
from clove.search.text_query import (
    CustomFieldInfo,
    SessionNames,
    TextQuery,
    parse_text_query,
)
from clove.search.tree import parse_node
from tests.conftest import Org

Raw = dict[str, Any]


class FakeNames:
    """In-memory custom fields and Smart Views, matched like SessionNames (case-insensitive
    names, or the id itself)."""

    FIELDS = {
        ("lead", "my_custom_field"): CustomFieldInfo("cf_text", "text", False),
        ("lead", "Source CRM"): CustomFieldInfo("cf_source", "text", False),
        ("lead", "Migration completed"): CustomFieldInfo("cf_migrated", "choices", False),
        ("lead", "Deal size"): CustomFieldInfo("cf_number", "number", False),
        ("lead", "Renewal"): CustomFieldInfo("cf_date", "date", False),
        ("lead", "Owner"): CustomFieldInfo("cf_user", "user", False),
        ("lead", "Secret"): CustomFieldInfo("cf_hidden", "hidden", False),
        ("contact", "Role"): CustomFieldInfo("cf_role", "choices", True),
    }
    VIEWS = {"Hot leads": "save_hot", "Follow up (team)": "save_follow"}

    def custom_field(self, object_type: str, name: str) -> CustomFieldInfo | None:
        for (kind, field_name), info in self.FIELDS.items():
            if kind == object_type and name.casefold() in (field_name.casefold(), info.id):
                return info
        return None

    def saved_search(self, name_or_id: str) -> str | None:
        for name, view_id in self.VIEWS.items():
            if name_or_id.casefold() == name.casefold() or name_or_id == view_id:
                return view_id
        return None


NAMES = FakeNames()


# --- Expected-tree builders ----------------------------------------------------------------------


def rf(object_type: str, field_name: str) -> Raw:
    return {"type": "regular_field", "object_type": object_type, "field_name": field_name}


def cf(field_id: str) -> Raw:
    return {"type": "custom_field", "custom_field_id": field_id}


def fc(field: Raw, condition: Raw, **extra: Any) -> Raw:
    return {"type": "field_condition", "field": field, "condition": condition, **extra}


def text(value: str, mode: str = "full_words") -> Raw:
    return {"type": "text", "mode": mode, "value": value}


def words(value: str, mode: str = "beginning_of_words") -> Raw:
    return {"type": "text", "mode": mode, "value": value}


def term(*values: str) -> Raw:
    return {"type": "term", "values": list(values)}


def related(this: str, other: str, query: Raw, **extra: Any) -> Raw:
    return {
        "type": "has_related",
        "this_object_type": this,
        "related_object_type": other,
        "related_query": query,
        **extra,
    }


def and_(*queries: Raw, **extra: Any) -> Raw:
    return {"type": "and", "queries": list(queries), **extra}


def or_(*queries: Raw, **extra: Any) -> Raw:
    return {"type": "or", "queries": list(queries), **extra}


def ago(unit: str, count: int, which: str | None = None) -> Raw:
    moment: Raw = {
        "type": "offset",
        "direction": "past",
        "moment": {"type": "now"},
        "offset": {unit: count},
    }
    if which:
        moment["which_day_end"] = which
    return moment


def local(day: str, which: str) -> Raw:
    return {"type": "fixed_local_date", "value": day, "which": which}


def utc(value: str) -> Raw:
    return {"type": "fixed_utc", "value": value}


def moments(on_or_after: Raw | None = None, before: Raw | None = None) -> Raw:
    condition: Raw = {"type": "moment_range"}
    if on_or_after:
        condition["on_or_after"] = on_or_after
    if before:
        condition["before"] = before
    return condition


def numbers(**bounds: float) -> Raw:
    return {"type": "number_range", **bounds}


def sort(field: Raw, direction: str = "asc") -> Raw:
    return {"direction": direction, "field": field}


MATCH_ALL: Raw = {"type": "match_all"}
EXISTS: Raw = {"type": "exists"}
CREATED = rf("lead", "date_created")


# --- Helpers -------------------------------------------------------------------------------------


def parse(query: str, object_type: str = "lead") -> TextQuery:
    return parse_text_query(query, object_type, NAMES)


def dump(node: Any) -> Raw:
    result: Raw = node.model_dump(exclude_defaults=True)
    return result


def expr(query: str, object_type: str = "lead") -> Raw:
    """The user's expression: the tree minus the object_type wrapper, as a terse dict."""
    tree = dump(parse(query, object_type).query)
    assert tree["type"] == "and"
    assert tree["queries"][0] == {"type": "object_type", "object_type": object_type}
    assert len(tree["queries"]) == 2
    inner: Raw = tree["queries"][1]
    return inner


def same(actual: Raw, expected: Raw) -> None:
    """Equal as validated trees (so omitted defaults do not matter), shown as dicts on failure."""
    assert actual == dump(parse_node(expected))


def error(query: str, object_type: str = "lead") -> str:
    with pytest.raises(ValidationFailed) as caught:
        parse(query, object_type)
    assert set(caught.value.field_errors) == {"query"}
    message: str = caught.value.field_errors["query"]
    return message


def sort_dicts(result: TextQuery) -> list[Raw]:
    return [spec.model_dump() for spec in result.sort]


def sorts(query: str) -> list[Raw]:
    return sort_dicts(parse(query))


# --- Part E: real-world text queries -------------------------------------------------------------


def test_t1_custom_field_status_and_sort() -> None:
    result = parse('custom.my_custom_field:"some_value" status:"Potential" sort:updated')
    assert dump(result.query) == dump(
        parse_node(
            and_(
                {"type": "object_type", "object_type": "lead"},
                and_(
                    fc(cf("cf_text"), text("some_value")),
                    fc(rf("lead", "status_label"), text("Potential", "exact_value")),
                ),
            )
        )
    )
    assert sort_dicts(result) == [sort(rf("lead", "date_updated"))]
    assert result.slice is None


def test_t2_quoted_custom_fields_exist_and_not_exist() -> None:
    query = '"custom.Source CRM":* not "custom.Migration completed":* sort:created'
    same(
        expr(query),
        and_(fc(cf("cf_source"), EXISTS), fc(cf("cf_migrated"), EXISTS, negate=True)),
    )
    assert sorts(query) == [sort(CREATED)]


def test_t3_slice_and_contact_count() -> None:
    result = parse("sort:created slice:2/5 contacts > 1")
    same(expr("sort:created slice:2/5 contacts > 1"), fc(rf("lead", "num_contacts"), numbers(gt=1)))
    assert result.slice == (2, 5)
    assert sort_dicts(result) == [sort(CREATED)]
    assert parse("sort:created contacts > 1").slice is None


def test_t4_sort_by_activities_is_not_supported() -> None:
    same(expr("addresses > 1"), fc(rf("lead", "num_addresses"), numbers(gt=1)))
    message = error("addresses > 1 sort:activities")
    assert "activities" in message
    assert "does not track" in message


@pytest.mark.parametrize(
    "query",
    [
        "has:calls",
        'call( date >= "2024-01-01" date < "2024-02-01")',
        '(call( date >= "2024-01-01" date < "2024-02-01")) slice:0/4',
    ],
)
def test_t5_calls_are_not_tracked(query: str) -> None:
    message = error(query)
    assert "call" in message
    assert "does not track" in message


@pytest.mark.parametrize(
    "query",
    [
        'sms( date >= "2024-01-01" date < "2024-02-01" status:inbox  direction:inbound  '
        'user:user_x ) in:"Hot leads"',
        "sms_messages > 0",
    ],
)
def test_t6_sms_is_not_tracked(query: str) -> None:
    message = error(query)
    assert "sms" in message.lower()
    assert "does not track" in message


def test_t7_sequence_subscriptions_through_contacts() -> None:
    same(
        expr("contact(sequence_subscription(sequence:*)) "),
        related(
            "lead",
            "contact",
            related(
                "contact",
                "sequence_subscription",
                fc(rf("sequence_subscription", "sequence_id"), EXISTS),
            ),
        ),
    )


def test_t8_call_recordings_are_not_tracked() -> None:
    message = error(
        'call((recording_duration > 0 or voicemail_duration > 0) date >= "2018-01-01" '
        'date <= "2018-02-01")'
    )
    assert message == "call(...) needs call activities, which Clove does not track yet."


def test_t9_email_list_and_sort() -> None:
    query = 'email in ("a@x.com", "B@Y.com") sort:date_created'
    same(
        expr(query),
        related(
            "lead", "contact_email", fc(rf("contact_email", "email"), term("a@x.com", "b@y.com"))
        ),
    )
    assert sorts(query) == [sort(CREATED)]
    assert "opportunities" in error("sort:-opportunities,date_created")


@pytest.mark.parametrize(
    "query", ['assigned_to:"user_abc" sort:date_created', 'user_id:"user_abc"']
)
def test_t10_lead_owners_are_not_tracked(query: str) -> None:
    message = error(query)
    assert "lead owners" in message
    assert query.split(":")[0] in message


# --- Grammar -------------------------------------------------------------------------------------

A, B, C = words("a"), words("b"), words("c")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a b", and_(A, B)),
        ("a and b", and_(A, B)),
        ("a or b c", or_(A, and_(B, C))),
        ("a b or c", or_(and_(A, B), C)),
        ("a and b or c", or_(and_(A, B), C)),
        ("(a or b) c", and_(or_(A, B), C)),
        ("not a b", and_({**A, "negate": True}, B)),
        ("not (a or b)", or_(A, B, negate=True)),
        ("not not a", A),
        ("a AND b OR c", or_(and_(A, B), C)),
        ("a And b oR c", or_(and_(A, B), C)),
        ("NOT a", {**A, "negate": True}),
        ("((a))", A),
    ],
)
def test_precedence_and_keywords(query: str, expected: Raw) -> None:
    same(expr(query), expected)


def test_keywords_only_as_whole_words() -> None:
    same(
        expr("notes order android"),
        and_(words("notes"), words("order"), words("android")),
    )
    same(expr("in"), words("in"))  # `in` is the list keyword only before "("
    same(expr("or a"), and_(words("or"), A))  # nothing to its left: an ordinary word


def test_bare_words_phrases_and_star() -> None:
    same(expr("acme"), words("acme"))
    same(expr('"acme inc"'), words("acme inc", "phrase"))
    same(expr('"say \\"hi\\""'), words('say "hi"', "phrase"))
    same(expr("*"), MATCH_ALL)
    same(expr(""), MATCH_ALL)
    same(expr("   "), MATCH_ALL)
    same(expr("sort:created"), MATCH_ALL)


def test_quoted_field_names_and_values() -> None:
    same(expr('"custom.Source CRM":salesforce'), fc(cf("cf_source"), text("salesforce")))
    same(expr('name:"Acme"'), fc(rf("lead", "name"), text("Acme")))
    same(expr('name:"Acme Inc."'), fc(rf("lead", "name"), text("Acme Inc.", "phrase")))
    same(expr('"name":acme'), fc(rf("lead", "name"), text("acme")))
    same(expr("url:http://acme.com/a?b=c"), fc(rf("lead", "url"), text("http://acme.com/a?b=c")))


@pytest.mark.parametrize("spelling", ["name", "company", "display_name", "lead_name", "NAME"])
def test_name_aliases(spelling: str) -> None:
    same(expr(f"{spelling}:acme"), fc(rf("lead", "name"), text("acme")))


@pytest.mark.parametrize("spaced", ["contacts>1", "contacts > 1", "contacts >1", "contacts> 1"])
def test_operators_with_optional_spaces(spaced: str) -> None:
    same(expr(spaced), fc(rf("lead", "num_contacts"), numbers(gt=1)))


# --- Operators on numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "bounds"),
    [
        (":", {"gte": 2, "lte": 2}),
        ("=", {"gte": 2, "lte": 2}),
        (">", {"gt": 2}),
        (">=", {"gte": 2}),
        ("<", {"lt": 2}),
        ("<=", {"lte": 2}),
    ],
)
@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("contacts", "num_contacts"),
        ("num_contacts", "num_contacts"),
        ("addresses", "num_addresses"),
        ("email_addresses", "num_email_addresses"),
        ("phone_numbers", "num_phone_numbers"),
    ],
)
def test_counts(op: str, bounds: Raw, field: str, name: str) -> None:
    same(expr(f"{field}{op}2"), fc(rf("lead", name), numbers(**bounds)))


def test_number_custom_field_and_decimals() -> None:
    same(expr('"custom.Deal size" >= 2.5'), fc(cf("cf_number"), numbers(gte=2.5)))
    same(expr("custom.cf_number:-3"), fc(cf("cf_number"), numbers(gte=-3, lte=-3)))
    assert "needs a number" in error("contacts > many")


# --- Operators on dates --------------------------------------------------------------------------

TODAY = (ago("days", 0, "start"), ago("days", 0, "end"))
DAY = (local("2024-01-01", "start"), local("2024-01-01", "end"))


@pytest.mark.parametrize(
    ("op", "on_or_after", "before"),
    [
        (":", 0, 1),
        ("=", 0, 1),
        (">=", 0, None),
        (">", 1, None),
        ("<", None, 0),
        ("<=", None, 1),
    ],
)
@pytest.mark.parametrize(("value", "ends"), [("today", TODAY), ("2024-01-01", DAY)])
def test_day_comparisons(
    op: str, on_or_after: int | None, before: int | None, value: str, ends: tuple[Raw, Raw]
) -> None:
    bounds = moments(
        ends[on_or_after] if on_or_after is not None else None,
        ends[before] if before is not None else None,
    )
    same(expr(f"created{op}{value}"), fc(CREATED, bounds))
    same(expr(f'created {op} "{value}"'), fc(CREATED, bounds))


@pytest.mark.parametrize(
    ("value", "unit", "count"),
    [
        ("today", "days", 0),
        ("Yesterday", "days", 1),
        ("30 days ago", "days", 30),
        ('"3 days ago"', "days", 3),
        ("1 day ago", "days", 1),
        ("2 weeks ago", "weeks", 2),
        ("1 week ago", "weeks", 1),
        ("6 months ago", "months", 6),
        ("1 month ago", "months", 1),
        ("2 years ago", "years", 2),
        ("1 YEAR AGO", "years", 1),
    ],
)
def test_relative_days(value: str, unit: str, count: int) -> None:
    same(
        expr(f"updated <= {value}"),
        fc(rf("lead", "date_updated"), moments(before=ago(unit, count, "end"))),
    )
    same(
        expr(f"date_created >= {value}"),
        fc(CREATED, moments(on_or_after=ago(unit, count, "start"))),
    )


@pytest.mark.parametrize(
    ("value", "unit", "count"),
    [
        ("10 mins ago", "minutes", 10),
        ("1 min ago", "minutes", 1),
        ("5 minutes ago", "minutes", 5),
        ("1 minute ago", "minutes", 1),
        ('"3 hours ago"', "hours", 3),
        ("1 hour ago", "hours", 1),
    ],
)
def test_relative_instants(value: str, unit: str, count: int) -> None:
    same(expr(f"created < {value}"), fc(CREATED, moments(before=ago(unit, count))))
    same(expr(f"created <= {value}"), fc(CREATED, moments(before=ago(unit, count))))
    same(expr(f"created > {value}"), fc(CREATED, moments(on_or_after=ago(unit, count))))
    same(expr(f"created >= {value}"), fc(CREATED, moments(on_or_after=ago(unit, count))))
    assert "single instant" in error(f"created:{value}")


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ('"2020-01-01T00:00"', "2020-01-01T00:00:00+00:00"),
        ("2020-01-01T10:30:00Z", "2020-01-01T10:30:00+00:00"),
        ("2020-01-01T10:30:00+02:00", "2020-01-01T08:30:00+00:00"),
        ('"2020-01-01 10:30:15.5"', "2020-01-01T10:30:15.500000+00:00"),
    ],
)
def test_datetimes_are_utc_instants(value: str, normalized: str) -> None:
    same(expr(f"date_updated>={value}"), fc(rf("lead", "date_updated"), moments(utc(normalized))))
    same(expr(f"date_updated>{value}"), fc(rf("lead", "date_updated"), moments(utc(normalized))))
    same(
        expr(f"date_updated<={value}"),
        fc(rf("lead", "date_updated"), moments(before=utc(normalized))),
    )


def test_date_custom_field_and_bad_dates() -> None:
    same(
        expr("custom.Renewal < 2024-01-01"),
        fc(cf("cf_date"), moments(before=local("2024-01-01", "start"))),
    )
    assert "needs a date" in error("created > soon")
    assert "impossible date" in error("created > 2024-02-30")
    assert "impossible date and time" in error("created > 2024-01-01T25:00")
    assert "too far back" in error("created > 99999999 years ago")
    assert "too far back" in error("created > 1" + "0" * 5000 + " days ago")


# --- Fields ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["status", "lead_status", "status_label", "Status"])
def test_status_label(spelling: str) -> None:
    field = rf("lead", "status_label")
    same(expr(f"{spelling}:potential"), fc(field, text("potential", "exact_value")))
    same(expr(f'{spelling}:"Bad Fit"'), fc(field, text("Bad Fit", "exact_value")))


def test_ids_and_references() -> None:
    same(expr("id:lead_1"), {"type": "id", "value": "lead_1"})
    same(expr("lead_id:lead_1"), {"type": "id", "value": "lead_1"})
    status = {"type": "reference", "reference_type": "status.lead", "object_ids": ["stat_1"]}
    same(expr("status_id:stat_1"), fc(rf("lead", "status_id"), status))
    me = {"type": "reference", "reference_type": "user", "object_ids": ["CURRENT_USER"]}
    same(expr("created_by:me"), fc(rf("lead", "created_by"), me))
    user = {"type": "reference", "reference_type": "user", "object_ids": ["user_1"]}
    same(expr("updated_by:user_1"), fc(rf("lead", "updated_by"), user))


def test_text_fields() -> None:
    same(expr("description:urgent"), fc(rf("lead", "description"), text("urgent")))
    same(
        expr('description:"very urgent"'),
        fc(rf("lead", "description"), text("very urgent", "phrase")),
    )
    same(expr("name:*"), fc(rf("lead", "name"), EXISTS))


def test_emails_and_phones() -> None:
    email = fc(rf("contact_email", "email"), text("jane@acme.com", "exact_value"))
    same(expr("email:Jane@Acme.com"), related("lead", "contact_email", email))
    same(expr("email_address:jane@acme.com"), related("lead", "contact_email", email))
    same(
        expr("email:*"),
        related("lead", "contact_email", fc(rf("contact_email", "email"), EXISTS)),
    )
    phone = fc(rf("contact_phone", "phone"), text("+15555550100", "exact_value"))
    same(expr("phone:+15555550100"), related("lead", "contact_phone", phone))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("custom.secret:abc", fc(cf("cf_hidden"), text("abc"))),
        ('custom.secret:"a b"', fc(cf("cf_hidden"), text("a b", "phrase"))),
        ('"custom.Migration completed":Yes', fc(cf("cf_migrated"), term("Yes"))),
        ("custom.owner:user_1", fc(cf("cf_user"), term("user_1"))),
        ("custom.cf_text:x", fc(cf("cf_text"), text("x"))),
    ],
)
def test_custom_field_conditions_follow_the_field_type(query: str, expected: Raw) -> None:
    same(expr(query), expected)


def test_has_collections() -> None:
    for collection, other in [
        ("email_addresses", "contact_email"),
        ("phone_numbers", "contact_phone"),
        ("contacts", "contact"),
        ("addresses", "address"),
    ]:
        same(expr(f"has:{collection}"), related("lead", other, MATCH_ALL))
    same(expr("not has:Contacts"), related("lead", "contact", MATCH_ALL, negate=True))


def test_saved_search() -> None:
    view = {"type": "saved_search", "saved_search_id": "save_hot"}
    same(expr('in:"hot leads"'), view)
    same(expr("in:save_hot"), view)
    same(expr('in:"Follow up (team)" a'), and_({**view, "saved_search_id": "save_follow"}, A))
    assert "Hot" in error('in:"Hot"')


# --- in (...) -------------------------------------------------------------------------------------


def test_in_lists() -> None:
    same(
        expr('status in ("Potential", "Bad Fit", qualified)'),
        fc(rf("lead", "status_label"), term("Potential", "Bad Fit", "qualified")),
    )
    same(
        expr("status_id in (stat_1, stat_2)"),
        fc(
            rf("lead", "status_id"),
            {
                "type": "reference",
                "reference_type": "status.lead",
                "object_ids": ["stat_1", "stat_2"],
            },
        ),
    )
    same(
        expr("created_by IN (me, user_2)"),
        fc(
            rf("lead", "created_by"),
            {
                "type": "reference",
                "reference_type": "user",
                "object_ids": ["CURRENT_USER", "user_2"],
            },
        ),
    )
    same(
        expr("id in (lead_1, lead_2)"),
        or_({"type": "id", "value": "lead_1"}, {"type": "id", "value": "lead_2"}),
    )
    same(
        expr('company in ("Acme Inc", Initech)'),
        or_(
            fc(rf("lead", "name"), text("Acme Inc", "phrase")),
            fc(rf("lead", "name"), text("Initech")),
        ),
    )
    same(
        expr("phone in (+1555, +1666)"),
        related("lead", "contact_phone", fc(rf("contact_phone", "phone"), term("+1555", "+1666"))),
    )
    same(
        expr("contacts in (0, 2)"),
        or_(
            fc(rf("lead", "num_contacts"), numbers(gte=0, lte=0)),
            fc(rf("lead", "num_contacts"), numbers(gte=2, lte=2)),
        ),
    )
    same(expr('"custom.Migration completed" in (a)'), fc(cf("cf_migrated"), term("a")))
    same(expr("status in(x)"), fc(rf("lead", "status_label"), term("x")))


# --- not, on every construct ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "acme",
        '"acme inc"',
        "name:acme",
        "name:*",
        "status:potential",
        "status in (a, b)",
        "status_id:stat_1",
        "id:lead_1",
        "id in (lead_1, lead_2)",
        "created_by:me",
        "created > 2024-01-01",
        "created < 3 hours ago",
        "contacts > 1",
        "email:a@b.com",
        "email in (a@b.com)",
        "phone:+1555",
        "custom.my_custom_field:x",
        '"custom.Source CRM":*',
        "has:contacts",
        'in:"Hot leads"',
        "contact(title:ceo)",
        "contact()",
        "sequence_subscription(status:active)",
        "(a or b)",
        "a b",
        "*",
    ],
)
def test_not_negates_every_construct(query: str) -> None:
    plain = expr(query)
    same(expr(f"not ({query})"), {**plain, "negate": True})
    if query != "a b":  # a single term: `not` applies to it without parentheses
        same(expr(f"not {query}"), {**plain, "negate": True})
    same(expr(f"not not ({query})"), plain)
    same(expr(f"NOT ({query}) b"), and_({**plain, "negate": True}, B))


# --- Contacts and nested clauses ------------------------------------------------------------------


def test_contact_clause_compiles_in_contact_context() -> None:
    same(
        expr('contact(title:ceo email:Jane@x.com "custom.Role":buyer)'),
        related(
            "lead",
            "contact",
            and_(
                fc(rf("contact", "title"), text("ceo")),
                related(
                    "contact",
                    "contact_email",
                    fc(rf("contact_email", "email"), text("jane@x.com", "exact_value")),
                ),
                fc(cf("cf_role"), term("buyer")),
            ),
        ),
    )
    same(expr("contact()"), related("lead", "contact", MATCH_ALL))
    same(expr("Contact(jane)"), related("lead", "contact", words("jane")))


def test_contact_object_type() -> None:
    assert dump(parse("title:ceo", "contact").query) == dump(
        parse_node(
            and_(
                {"type": "object_type", "object_type": "contact"},
                fc(rf("contact", "title"), text("ceo")),
            )
        )
    )
    same(
        expr("lead_id:lead_1 created >= today", "contact"),
        and_(
            fc(
                rf("contact", "lead_id"),
                {"type": "reference", "reference_type": "lead", "object_ids": ["lead_1"]},
            ),
            fc(rf("contact", "date_created"), moments(on_or_after=TODAY[0])),
        ),
    )
    same(expr("id:cont_1", "contact"), {"type": "id", "value": "cont_1"})
    same(expr("has:phone_numbers", "contact"), related("contact", "contact_phone", MATCH_ALL))
    same(
        expr("phone:+1555", "contact"),
        related(
            "contact",
            "contact_phone",
            fc(rf("contact_phone", "phone"), text("+1555", "exact_value")),
        ),
    )
    same(
        expr("sequence_subscription(sequence_id:seq_1)", "contact"),
        related(
            "contact",
            "sequence_subscription",
            fc(
                rf("sequence_subscription", "sequence_id"),
                {"type": "reference", "reference_type": "sequence", "object_ids": ["seq_1"]},
            ),
        ),
    )
    assert sort_dicts(parse("sort:-name", "contact")) == [sort(rf("contact", "name"), "desc")]


def test_sequence_subscription_from_a_lead_goes_through_contacts() -> None:
    same(
        expr("sequence_subscription(status in (active, paused))"),
        related(
            "lead",
            "contact",
            related(
                "contact",
                "sequence_subscription",
                fc(rf("sequence_subscription", "status"), term("active", "paused")),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("query", "object_type", "fragment"),
    [
        ("contact(contact(a))", "lead", "contact(...) is not available inside contact(...)"),
        ("contact(a)", "contact", "contact(...) is not available when searching contacts"),
        ("contact(status:x)", "lead", "Unknown field 'status' when searching contacts"),
        ("sequence_subscription(acme)", "lead", "takes sequence: and status:"),
        ("sequence_subscription(title:x)", "lead", "Unknown field 'title'"),
        ("foo(a)", "lead", "Unknown clause 'foo(...)'"),
        ("opportunity(status:won)", "lead", "opportunities"),
        ("status_change(date:today)", "lead", "status changes"),
        ("email(subject:x)", "lead", "email activities"),
        ("contact(has:contacts)", "lead", "unknown collection 'contacts'"),
        ("status:x", "contact", "Unknown field 'status' when searching contacts"),
    ],
)
def test_clause_errors(query: str, object_type: str, fragment: str) -> None:
    assert fragment in error(query, object_type)


# --- Directives -----------------------------------------------------------------------------------


def test_sort_keys() -> None:
    assert sorts("sort:-created,updated sort:name") == [
        sort(CREATED, "desc"),
        sort(rf("lead", "date_updated")),
        sort(rf("lead", "display_name")),
    ]
    assert sorts('sort:display_name,-num_contacts,status sort:"-custom.Deal size"') == [
        sort(rf("lead", "display_name")),
        sort(rf("lead", "num_contacts"), "desc"),
        sort(rf("lead", "status_label")),
        sort(cf("cf_number"), "desc"),
    ]
    assert sorts("a SORT:Date_Created b") == [sort(CREATED)]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("sort:calls", "call activities"),
        ("sort:emails", "email activities"),
        ("sort:opportunities", "opportunities"),
        ("sort:bogus", "cannot sort leads by 'bogus'"),
        ("sort:custom.nope", "unknown custom field 'nope'"),
        ("contact(sort:name)", "cannot appear inside contact(...)"),
        ("not (sort:name)", "cannot appear after not"),
        ("slice:4/4", "0 <= i < n"),
        ("slice:a/b", "0 <= i < n"),
        ("slice:0/0", "0 <= i < n"),
        ("slice:1/4 slice:2/4", "only once"),
        ("not slice:1/4", "after not"),
    ],
)
def test_directive_errors(query: str, fragment: str) -> None:
    assert fragment in error(query)


def test_directives_anywhere_between_terms() -> None:
    result = parse("a slice:0/2 or sort:-updated b")
    same(expr("a slice:0/2 or sort:-updated b"), or_(A, B))
    assert result.slice == (0, 2)
    assert sort_dicts(result) == [sort(rf("lead", "date_updated"), "desc")]


# --- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("foo:bar", "Unknown field 'foo' when searching leads"),
        ("custom.Nope:x", "Unknown custom field 'Nope' for leads"),
        ("has:widgets", "unknown collection 'widgets'"),
        ("has:opportunities", "opportunities"),
        ("has:emails", "email activities"),
        ("calls = 0", "'calls' needs call activities"),
        ("last_emailed:today", "'last_emailed' needs email activities"),
        ("opportunity:won", "opportunities"),
        ("opportunity_user:me", "opportunities"),
        ("notifications:x", "activities"),
        ("name > a", "'name' cannot be compared with '>'"),
        ("status_id >= x", "cannot be compared"),
        ("id < x", "cannot be compared"),
        ('name:""', "empty value"),
        ('""', "empty"),
        ("name in (a, *)", "'*' cannot be one of the values"),
        ("created in (*)", "'*' cannot be one of the values"),
    ],
)
def test_meaning_errors(query: str, fragment: str) -> None:
    assert fragment in error(query)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (")", "Syntax error at column 1: this ')' has no matching '('."),
        ("a )", "Syntax error at column 3: this ')' has no matching '('."),
        ("name:", "Syntax error: the query ends too early; expected a value."),
        ("name: )", "Syntax error at column 7: unexpected ')'; expected a value."),
        ('name:"acme', "Syntax error at column 6: this double quote is never closed."),
        ("(a or b", "Syntax error: the query ends too early; expected "),
        ("a or", "Syntax error: the query ends too early; expected a search term."),
        ("status in (a,)", "Syntax error at column 14: unexpected ')'; expected a value."),
        ("status in (a b)", "Syntax error at column 14: unexpected 'b'; expected ')' or ','."),
        ("status in ()", "Syntax error at column 12: unexpected ')'; expected a value."),
        ("()", "Syntax error at column 2: unexpected ')'; expected a search term."),
        ("name:(x)", "Syntax error at column 6: unexpected '('; expected a value."),
        (
            "a:b =c",
            "Syntax error at column 5: unexpected '=c'; expected 'and', 'or', "
            "a search term or the end of the query.",
        ),
        ("sort:", "Syntax error: the query ends too early; expected "),
    ],
)
def test_syntax_errors_say_where_and_what(query: str, message: str) -> None:
    assert error(query).startswith(message)


def test_deep_nesting_is_a_400_not_a_crash() -> None:
    assert "nested too deeply" in error("(" * 500 + "a" + ")" * 500)
    assert "nested too deeply" in error("not " * 500 + "a")
    same(expr("(" * 60 + "a" + ")" * 60), A)


def test_unknown_object_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_text_query("a", "opportunity", NAMES)


# --- Property: nothing but ValidationFailed escapes ----------------------------------------------

TOKENS = [
    "a",
    "acme",
    '"x y"',
    '"',
    "(",
    ")",
    "not",
    "and",
    "OR",
    "in",
    ",",
    ":",
    ">",
    "<=",
    "=",
    "*",
    "name",
    "status",
    "created",
    "contacts",
    "email",
    "id",
    "custom.Owner",
    '"custom.Deal size"',
    "contact(",
    "sequence_subscription(",
    "call(",
    "sort:",
    "-created",
    "slice:",
    "1/2",
    "in:",
    "has:",
    "today",
    "3 days ago",
    "10 mins ago",
    "2024-01-01",
    "2024-01-01T10:00Z",
    "-1.5",
    "me",
]


def _check(query: str) -> None:
    try:
        result = parse_text_query(query, "lead", NAMES)
    except ValidationFailed as exc:
        assert exc.field_errors["query"]
    else:
        assert isinstance(result, TextQuery)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_random_text_only_raises_validation_failed(query: str) -> None:
    _check(query)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=14), st.sampled_from([" ", ""]))
def test_token_soup_only_raises_validation_failed(tokens: list[str], glue: str) -> None:
    _check(glue.join(tokens))


# --- SessionNames against the database ------------------------------------------------------------


def _custom_field(session: Session, org: Org, object_type: str, name: str, kind: str) -> str:
    field_id = new_id("cf")
    session.add(
        CustomField(
            id=field_id,
            organization_id=org.id,
            object_type=object_type,
            name=name,
            type=kind,
            accepts_multiple_values=kind == "choices",
        )
    )
    return field_id


def test_session_names_resolve_case_insensitively(
    session_factory: sessionmaker[Session], org: Org, other_org: Org
) -> None:
    view_id = new_id("save")
    with session_factory.begin() as session:
        deal = _custom_field(session, org, "lead", "Deal Size", "number")
        role = _custom_field(session, org, "contact", "Rôle", "choices")
        _custom_field(session, other_org, "lead", "Other Org Field", "text")
        session.add(SavedSearch(id=view_id, organization_id=org.id, name="Hot Leads"))
        session.add(SavedSearch(id=new_id("save"), organization_id=other_org.id, name="Theirs"))

    with session_factory() as session:
        names = SessionNames(session, org.id)
        assert names.custom_field("lead", "deal size") == CustomFieldInfo(deal, "number", False)
        assert names.custom_field("lead", deal) == CustomFieldInfo(deal, "number", False)
        assert names.custom_field("contact", "RÔLE") == CustomFieldInfo(role, "choices", True)
        assert names.custom_field("contact", "deal size") is None  # wrong object type
        assert names.custom_field("lead", "other org field") is None  # another organization
        assert names.saved_search("hot leads") == view_id
        assert names.saved_search(view_id) == view_id
        assert names.saved_search("theirs") is None
        assert names.saved_search("nope") is None

        result = parse_text_query('"custom.DEAL SIZE" > 5 in:"HOT LEADS"', "lead", names)
        same(
            dump(result.query)["queries"][1],
            and_(
                fc(cf(deal), numbers(gt=5)),
                {"type": "saved_search", "saved_search_id": view_id},
            ),
        )


def test_session_names_prefer_the_exact_spelling(
    session_factory: sessionmaker[Session], org: Org
) -> None:
    with session_factory.begin() as session:
        _custom_field(session, org, "lead", "status", "text")
        exact = _custom_field(session, org, "lead", "Status", "text")
    with session_factory() as session:
        info = SessionNames(session, org.id).custom_field("lead", "Status")
        assert info is not None
        assert info.id == exact
