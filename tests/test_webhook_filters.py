"""Webhook extra_filter trees: matching event documents and refusing malformed filters."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clove.webhook.filters import MAX_DEPTH, MAX_NODES, FilterError, check_filter, matches

USER = "user_N6KhMpzHRCYQHdn4gRNIFNN5JExnsrprKA6ekxM63XA"
OTHER_USER = "user_0therUserId0000000000000000000000000000000"
CF_PRODUCT = "custom.cf_rR9HjgjI4SYy1X1IlMOozK2VkxMgU5NnHquTR8DVxoQ"
CF_SUB_PRODUCT = "custom.cf_vwqYhEFwzPyfCErS8uQ77is1wFLvr9BgVi6cTfbFM48"


def lead_updated_event(**data_changes: Any) -> dict[str, Any]:
    """A lead `updated` event document as Clove serializes it."""
    data: dict[str, Any] = {
        "id": "lead_abc",
        "name": "Wayne Travel Enterprises",
        "status_id": "stat_potential",
        "status_label": "Potential",
        "description": None,
        "user_id": USER,
        "addresses": [
            {"label": "business", "address_1": "1 Main St", "state": "CA", "country": "US"},
            {"label": "mailing", "address_1": "2 Bay Rd", "state": "MD", "country": "US"},
        ],
        "contacts": [],
        CF_PRODUCT: "product_1234",
        CF_SUB_PRODUCT: "sub_product_5678",
    }
    data.update(data_changes)
    return {
        "id": "ev_abc",
        "organization_id": "orga_abc",
        "object_type": "lead",
        "object_id": "lead_abc",
        "lead_id": "lead_abc",
        "action": "updated",
        "user_id": USER,
        "request_id": "req_abc",
        "api_key_id": None,
        "oauth_client_id": None,
        "data": data,
        "previous_data": {"status_id": "stat_lead", "status_label": "Lead"},
        "changed_fields": ["status_id", "status_label", "date_updated"],
        "meta": {"request_method": "PUT", "request_path": "/api/v1/lead/lead_abc/"},
        "date_created": "2026-01-02T03:04:05.678000",
        "date_updated": "2026-01-02T03:04:05.678000",
    }


def field(name: str, inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "field_accessor", "field": name, "filter": inner}


def equals(value: Any) -> dict[str, Any]:
    return {"type": "equals", "value": value}


def contains(value: Any) -> dict[str, Any]:
    return {"type": "contains", "value": value}


def checked_match(node: dict[str, Any], document: Any) -> bool:
    """Every filter these tests match is first checked, as fan-out does."""
    check_filter(node)
    return matches(node, document)


# --- leaf nodes, applied to the value they are handed ---------------------------------------


@pytest.mark.parametrize(
    ("value", "subject", "expected"),
    [
        ("Potential", "Potential", True),
        ("Potential", "potential", False),  # case-sensitive
        ("Potential", "Potential ", False),  # the entire value, not a prefix
        (3, 3, True),
        (3, 3.0, True),  # one JSON number
        (3, "3", False),
        (None, None, True),
        (True, True, True),
        (True, 1, False),  # a boolean is never a number
        (1, True, False),
        (False, 0, False),
        (0, False, False),
        ([1, True], [1, True], True),
        ([1, True], [1, 1], False),  # also inside arrays
        (["a", "b"], ["b", "a"], False),  # arrays compare in order
        ({"a": [False]}, {"a": [False]}, True),
        ({"a": [False]}, {"a": [0]}, False),  # and inside objects
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1, "b": 2}, {"a": 1}, False),
        ({"a": 1}, {"b": 1}, False),
        ([1], [1, 2], False),
        ([1, 2], [1], False),
        ([], [], True),
        ({}, {}, True),
        ([], {}, False),
        ("x", ["x"], False),
    ],
)
def test_equals_and_not_equals_are_exact_complements(
    value: Any, subject: Any, expected: bool
) -> None:
    assert checked_match(equals(value), subject) is expected
    assert checked_match({"type": "not_equals", "value": value}, subject) is (not expected)


@pytest.mark.parametrize(
    ("subject", "is_null"),
    [(None, True), ("", False), (0, False), (False, False), ([], False), ({}, False)],
)
def test_is_null_and_non_null_treat_only_null_as_null(subject: Any, is_null: bool) -> None:
    assert checked_match({"type": "is_null"}, subject) is is_null
    assert checked_match({"type": "non_null"}, subject) is (not is_null)


@pytest.mark.parametrize(
    ("subject", "value", "expected"),
    [
        (["name", "status_id"], "name", True),
        (["name", "status_id"], "status", False),  # membership, not a substring of an item
        (["name"], "nam", False),
        ([], "name", False),
        ([1, 2, 3], 2, True),
        ([1, 2, 3], 2.0, True),
        ([1, 2, 3], True, False),  # a boolean is not the number 1 here either
        ([True], 1, False),
        ([True], True, True),
        ([None], None, True),
        ([["a"], {"b": 1}], ["a"], True),
        ([["a"], {"b": 1}], {"b": 1}, True),
        ("Wayne Travel Enterprises", "Travel", True),
        ("Wayne Travel Enterprises", "travel", False),  # case-sensitive
        ("Wayne Travel Enterprises", "", True),
        ("abc", "abcd", False),
        ("123", 2, False),  # substring needs a string value
        (None, "x", False),
        (12345, 234, False),
        (12345, "234", False),
        ({"name": 1}, "name", False),  # not key membership
        (True, True, False),
    ],
)
def test_contains(subject: Any, value: Any, expected: bool) -> None:
    assert checked_match(contains(value), subject) is expected


# --- combinators ------------------------------------------------------------------------------

YES = {"type": "is_null"}
NO = {"type": "non_null"}


@pytest.mark.parametrize(
    ("children", "all_match", "any_match"),
    [
        ([YES], True, True),
        ([NO], False, False),
        ([YES, YES], True, True),
        ([YES, NO], False, True),
        ([NO, YES], False, True),
        ([NO, NO], False, False),
        ([YES, YES, YES, NO], False, True),
        ([], True, False),  # the empty conjunction and disjunction
    ],
)
def test_and_or(children: list[dict[str, Any]], all_match: bool, any_match: bool) -> None:
    assert checked_match({"type": "and", "filters": children}, None) is all_match
    assert checked_match({"type": "or", "filters": children}, None) is any_match


def test_not_inverts_and_double_not_restores() -> None:
    assert checked_match({"type": "not", "filter": YES}, None) is False
    assert checked_match({"type": "not", "filter": NO}, None) is True
    double = {"type": "not", "filter": {"type": "not", "filter": equals("a")}}
    assert checked_match(double, "a") is True
    assert checked_match(double, "b") is False


def test_combinators_pass_the_same_value_to_every_child() -> None:
    between = {
        "type": "and",
        "filters": [contains("Travel"), {"type": "not", "filter": equals("")}],
    }
    assert checked_match(between, "Wayne Travel") is True
    assert checked_match(between, "Wayne") is False


# --- moving through the document --------------------------------------------------------------


def test_field_accessor_reads_a_top_level_key() -> None:
    event = lead_updated_event()
    assert checked_match(field("action", equals("updated")), event) is True
    assert checked_match(field("action", equals("created")), event) is False
    assert checked_match(field("object_type", equals("lead")), event) is True


@pytest.mark.parametrize(
    "subject",
    [{}, {"other": 1}, None, "user_id", ["user_id"], 5, True],
    ids=["empty", "other-key", "null", "string", "list", "number", "bool"],
)
def test_field_accessor_gives_null_for_a_missing_key_or_a_non_object(subject: Any) -> None:
    assert checked_match(field("user_id", {"type": "is_null"}), subject) is True
    assert checked_match(field("user_id", {"type": "non_null"}), subject) is False
    assert checked_match(field("user_id", {"type": "not_equals", "value": "x"}), subject) is True
    assert checked_match(field("user_id", equals(None)), subject) is True


def test_field_accessor_reaches_a_key_whose_value_is_null() -> None:
    event = lead_updated_event()
    assert checked_match(field("api_key_id", {"type": "is_null"}), event) is True
    assert checked_match(field("data", field("description", {"type": "is_null"})), event) is True


def test_field_is_a_literal_key_not_a_dotted_path() -> None:
    event = lead_updated_event()
    # `custom.cf_…` is itself a key of lead data, so it must be found as one.
    assert checked_match(field("data", field(CF_PRODUCT, equals("product_1234"))), event) is True
    # A dotted name does not walk into nested objects when the literal key is absent.
    assert checked_match(field("data.status_label", {"type": "is_null"}), event) is True
    assert checked_match(field("data.status_label", equals("Potential")), event) is False
    assert checked_match(field("meta.request_method", equals("PUT")), event) is False
    nested = {"custom": {"cf_x": "v"}}
    assert checked_match(field("custom.cf_x", equals("v")), nested) is False
    # When both exist, the literal key wins and nothing else is looked at.
    both = {"a.b": 1, "a": {"b": 2}}
    assert checked_match(field("a.b", equals(1)), both) is True


def test_field_accessor_does_not_index_lists() -> None:
    assert checked_match(field("0", equals("a")), ["a"]) is False
    assert checked_match(field("0", equals("a")), {"0": "a"}) is True


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ([1, 2, 3], True),
        ([3], True),
        ([1, 2], False),
        ([], False),
        ([[3]], False),  # one level only
        ([True, 3.0], True),
        (3, False),  # not an array
        ("3", False),
        ({"a": 3}, False),
        (None, False),
    ],
)
def test_any_array_value(subject: Any, expected: bool) -> None:
    assert checked_match({"type": "any_array_value", "filter": equals(3)}, subject) is expected


def test_any_array_value_on_an_empty_array_is_false_even_for_not() -> None:
    anything = {"type": "any_array_value", "filter": {"type": "not", "filter": NO}}
    assert checked_match(anything, []) is False
    assert checked_match(anything, [None]) is True
    none_match = {"type": "not", "filter": {"type": "any_array_value", "filter": equals("x")}}
    assert checked_match(none_match, []) is True
    assert checked_match(none_match, ["y", "x"]) is False


def test_nested_arrays_need_nested_any_array_value() -> None:
    inner = {"type": "any_array_value", "filter": equals("x")}
    outer = {"type": "any_array_value", "filter": inner}
    assert checked_match(outer, [["a"], ["b", "x"]]) is True
    assert checked_match(outer, [["a"], ["b"]]) is False
    assert checked_match(outer, ["x"]) is False


def test_top_level_filter_sees_the_whole_document() -> None:
    event = lead_updated_event()
    assert checked_match({"type": "non_null"}, event) is True
    assert checked_match(equals(copy.deepcopy(event)), event) is True


def test_matches_does_not_change_the_filter_or_the_document() -> None:
    event = lead_updated_event()
    node = field("data", field("addresses", {"type": "any_array_value", "filter": YES}))
    event_before, node_before = copy.deepcopy(event), copy.deepcopy(node)
    checked_match(node, event)
    assert event == event_before
    assert node == node_before


# --- Close's documented examples (developer.close.com, "Webhook Filters") --------------------


def test_example_user_id_equals() -> None:
    node = field("user_id", equals(USER))
    assert checked_match(node, lead_updated_event()) is True
    other = lead_updated_event()
    other["user_id"] = OTHER_USER
    assert checked_match(node, other) is False


def test_example_drill_into_data_user_id() -> None:
    node = field("data", field("user_id", equals(USER)))
    assert checked_match(node, lead_updated_event()) is True
    assert checked_match(node, lead_updated_event(user_id=OTHER_USER)) is False


@pytest.mark.parametrize(
    "excluding",
    [
        {"type": "not", "filter": equals(USER)},
        {"type": "not_equals", "value": USER},
    ],
    ids=["not", "not_equals"],
)
def test_example_exclude_one_user(excluding: dict[str, Any]) -> None:
    node = field("data", field("user_id", excluding))
    assert checked_match(node, lead_updated_event()) is False
    assert checked_match(node, lead_updated_event(user_id=OTHER_USER)) is True
    # A lead event without data (a delete) has no user there, so it is not excluded.
    deleted = lead_updated_event()
    deleted["data"] = None
    assert checked_match(node, deleted) is True


def test_example_non_null_user_id() -> None:
    node = field("user_id", {"type": "non_null"})
    assert checked_match(node, lead_updated_event()) is True
    system = lead_updated_event()
    system["user_id"] = None
    assert checked_match(node, system) is False


def test_example_lead_name_contains_travel() -> None:
    node = field("data", field("name", contains("Travel")))
    assert checked_match(node, lead_updated_event()) is True
    assert checked_match(node, lead_updated_event(name="Acme")) is False
    assert checked_match(node, lead_updated_event(name=None)) is False


def test_example_changed_fields_contains_name() -> None:
    node = field("changed_fields", contains("name"))
    event = lead_updated_event()
    assert checked_match(node, event) is False
    event["changed_fields"] = ["name", "date_updated"]
    assert checked_match(node, event) is True


def test_example_name_or_description_changed() -> None:
    node = field(
        "changed_fields", {"type": "or", "filters": [contains("name"), contains("description")]}
    )
    event = lead_updated_event()
    for changed, expected in [
        (["name"], True),
        (["description", "date_updated"], True),
        (["status_id"], False),
        ([], False),
    ]:
        event["changed_fields"] = changed
        assert checked_match(node, event) is expected, changed
    created = lead_updated_event()
    del created["changed_fields"]
    assert checked_match(node, created) is False


def test_example_two_custom_fields_must_both_match() -> None:
    node = {
        "type": "and",
        "filters": [
            field("data", field(CF_PRODUCT, equals("product_1234"))),
            field("data", field(CF_SUB_PRODUCT, equals("sub_product_5678"))),
        ],
    }
    assert checked_match(node, lead_updated_event()) is True
    assert checked_match(node, lead_updated_event(**{CF_SUB_PRODUCT: "sub_product_0"})) is False
    without = lead_updated_event()
    del without["data"][CF_PRODUCT]
    assert checked_match(node, without) is False


def test_example_an_address_in_maryland_usa() -> None:
    in_md_us = {
        "type": "and",
        "filters": [field("state", equals("MD")), field("country", equals("US"))],
    }
    node = field("data", field("addresses", {"type": "any_array_value", "filter": in_md_us}))
    assert checked_match(node, lead_updated_event()) is True
    # Both conditions must hold for the same address, not across two addresses.
    split = [{"state": "MD", "country": "CA"}, {"state": "CA", "country": "US"}]
    assert checked_match(node, lead_updated_event(addresses=split)) is False
    assert checked_match(node, lead_updated_event(addresses=[])) is False
    assert checked_match(node, lead_updated_event(addresses=None)) is False


def test_lead_status_changed_to_a_label() -> None:
    """A lead `updated` webhook that fires only when the status changes to "Qualified"."""
    node = {
        "type": "and",
        "filters": [
            field("changed_fields", contains("status_id")),
            field("data", field("status_label", equals("Qualified"))),
        ],
    }
    assert checked_match(node, lead_updated_event(status_label="Qualified")) is True
    assert checked_match(node, lead_updated_event(status_label="Potential")) is False
    renamed = lead_updated_event(status_label="Qualified")
    renamed["changed_fields"] = ["name"]
    assert checked_match(node, renamed) is False


def test_status_changed_away_from_a_label() -> None:
    node = field("previous_data", field("status_label", equals("Lead")))
    assert checked_match(node, lead_updated_event()) is True
    created = lead_updated_event()
    created["previous_data"] = {}
    assert checked_match(node, created) is False


def test_any_contact_has_an_email_at_a_domain() -> None:
    contacts: list[dict[str, Any]] = [
        {"id": "cont_1", "emails": [{"type": "office", "email": "ann@example.com"}]},
        {"id": "cont_2", "emails": []},
        {"id": "cont_3"},
    ]
    has_email = field("email", contains("@acme.test"))
    node = field(
        "data",
        field(
            "contacts",
            {
                "type": "any_array_value",
                "filter": field("emails", {"type": "any_array_value", "filter": has_email}),
            },
        ),
    )
    assert checked_match(node, lead_updated_event(contacts=contacts)) is False
    contacts[1]["emails"] = [{"type": "home", "email": "bob@acme.test"}]
    assert checked_match(node, lead_updated_event(contacts=contacts)) is True


def test_a_filter_of_maximum_depth_matches() -> None:
    node: dict[str, Any] = equals("bottom")
    document: Any = "bottom"
    for i in range(MAX_DEPTH - 1):
        node = field(f"k{i}", node)
        document = {f"k{i}": document}
    assert checked_match(node, document) is True
    assert checked_match(node, {"k18": {}}) is False


def test_matches_refuses_an_unchecked_tree_deeper_than_the_limit() -> None:
    node: dict[str, Any] = YES
    for _ in range(MAX_DEPTH):
        node = {"type": "not", "filter": node}
    with pytest.raises(FilterError):
        matches(node, None)


# --- check_filter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node",
    [
        equals("x"),
        equals(None),
        equals([1, {"a": [True, None, 1.5]}]),
        {"type": "not_equals", "value": {}},
        contains("x"),
        {"type": "is_null"},
        {"type": "non_null"},
        {"type": "and", "filters": []},
        {"type": "or", "filters": [YES, NO]},
        {"type": "not", "filter": YES},
        field("", YES),
        field("custom.cf_abc", YES),
        {"type": "any_array_value", "filter": YES},
    ],
)
def test_check_filter_accepts_well_formed_nodes(node: dict[str, Any]) -> None:
    check_filter(node)


@pytest.mark.parametrize(
    ("node", "path", "says"),
    [
        (None, "extra_filter", "must be an object"),
        ([YES], "extra_filter", "must be an object"),
        ("is_null", "extra_filter", "must be an object"),
        ({}, "extra_filter.type", "is required"),
        ({"value": 1}, "extra_filter.type", "is required"),
        ({"type": 1}, "extra_filter.type", "must be a string"),
        ({"type": None}, "extra_filter.type", "must be a string"),
        ({"type": "eq", "value": 1}, "extra_filter.type", "unknown filter type 'eq'"),
        ({"type": "EQUALS", "value": 1}, "extra_filter.type", "unknown filter type"),
        ({"type": "equals"}, "extra_filter.value", "is required"),
        ({"type": "contains"}, "extra_filter.value", "is required"),
        ({"type": "is_null", "value": None}, "extra_filter.value", "is not allowed"),
        ({"type": "equals", "value": 1, "field": "x"}, "extra_filter.field", "is not allowed"),
        ({"type": "equals", "value": {1, 2}}, "extra_filter.value", "must be a JSON value"),
        ({"type": "equals", "value": [("a",)]}, "extra_filter.value", "must be a JSON value"),
        ({"type": "equals", "value": {1: "a"}}, "extra_filter.value", "must be a JSON value"),
        ({"type": "and"}, "extra_filter.filters", "is required"),
        ({"type": "and", "filters": YES}, "extra_filter.filters", "must be a list"),
        ({"type": "or", "filters": None}, "extra_filter.filters", "must be a list"),
        ({"type": "and", "filter": YES}, "extra_filter.filter", "is not allowed"),
        ({"type": "not"}, "extra_filter.filter", "is required"),
        ({"type": "not", "filter": None}, "extra_filter.filter", "must be an object"),
        ({"type": "not", "filters": [YES]}, "extra_filter.filters", "is not allowed"),
        ({"type": "field_accessor", "filter": YES}, "extra_filter.field", "is required"),
        ({"type": "field_accessor", "field": "x"}, "extra_filter.filter", "is required"),
        (
            {"type": "field_accessor", "field": "data", "filter": None},
            "extra_filter.filter",
            "must be an object",
        ),
        ({"type": "field_accessor", "field": 1, "filter": YES}, "extra_filter.field", "string"),
        (
            {"type": "field_accessor", "field": ["a", "b"], "filter": YES},
            "extra_filter.field",
            "must be a string",
        ),
        ({"type": "any_array_value"}, "extra_filter.filter", "is required"),
        ({"type": "any_array_value", "filter": []}, "extra_filter.filter", "must be an object"),
    ],
)
def test_check_filter_rejects_with_the_path(node: Any, path: str, says: str) -> None:
    with pytest.raises(FilterError) as caught:
        check_filter(node)
    assert caught.value.path == path
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_check_filter_paths_go_through_lists_and_children() -> None:
    node = {
        "type": "and",
        "filters": [
            field("data", YES),
            {"type": "or", "filters": [YES, field("x", {"type": "not", "filter": {"type": "?"}})]},
        ],
    }
    with pytest.raises(FilterError) as caught:
        check_filter(node)
    assert caught.value.path == "extra_filter.filters[1].filters[1].filter.filter.type"


def test_check_filter_reports_the_first_error_in_document_order() -> None:
    node = {"type": "or", "filters": [{"type": "not"}, {"type": "bad"}]}
    with pytest.raises(FilterError) as caught:
        check_filter(node)
    assert caught.value.path == "extra_filter.filters[0].filter"


def test_check_filter_uses_the_callers_root_path() -> None:
    with pytest.raises(FilterError) as caught:
        check_filter({"type": "not", "filter": {}}, path="events[2].extra_filter")
    assert caught.value.path == "events[2].extra_filter.filter.type"


def nested_nots(levels: int) -> dict[str, Any]:
    """`levels` nodes deep: nots around one is_null."""
    node: dict[str, Any] = YES
    for _ in range(levels - 1):
        node = {"type": "not", "filter": node}
    return node


def test_check_filter_depth_limit() -> None:
    check_filter(nested_nots(MAX_DEPTH))
    with pytest.raises(FilterError) as caught:
        check_filter(nested_nots(MAX_DEPTH + 1))
    assert caught.value.path == "extra_filter" + ".filter" * MAX_DEPTH
    assert f"at most {MAX_DEPTH}" in str(caught.value)


def test_check_filter_depth_counts_list_levels() -> None:
    node: dict[str, Any] = YES
    for _ in range(MAX_DEPTH):
        node = {"type": "and", "filters": [node]}
    with pytest.raises(FilterError) as caught:
        check_filter(node)
    assert caught.value.path == "extra_filter" + ".filters[0]" * MAX_DEPTH


def test_check_filter_refuses_a_very_deep_tree_without_recursing() -> None:
    with pytest.raises(FilterError):
        check_filter(nested_nots(100_000))


def test_check_filter_node_limit() -> None:
    check_filter({"type": "or", "filters": [YES] * (MAX_NODES - 1)})
    one_too_many = {"type": "not", "filter": {"type": "or", "filters": [YES] * (MAX_NODES - 1)}}
    with pytest.raises(FilterError) as caught:
        check_filter(one_too_many)
    assert caught.value.path == f"extra_filter.filter.filters[{MAX_NODES - 2}]"
    assert f"at most {MAX_NODES}" in str(caught.value)


def test_check_filter_refuses_a_list_with_too_many_children_at_the_list() -> None:
    with pytest.raises(FilterError) as caught:
        check_filter({"type": "or", "filters": [YES] * MAX_NODES})
    assert caught.value.path == "extra_filter.filters"
    assert f"at most {MAX_NODES}" in str(caught.value)


def test_check_filter_node_limit_counts_every_level() -> None:
    branch = {"type": "and", "filters": [YES, YES, YES]}  # 4 nodes each
    check_filter({"type": "or", "filters": [branch] * ((MAX_NODES - 1) // 4)})
    with pytest.raises(FilterError):
        check_filter({"type": "or", "filters": [branch] * 50})


def test_check_filter_refuses_a_huge_list_quickly() -> None:
    with pytest.raises(FilterError) as caught:
        check_filter({"type": "and", "filters": [YES] * 1_000_000})
    assert "at most" in str(caught.value)
