"""Property tests of `POST /data/search/`: random query trees against a plain-Python reading
of the semantics (tests/search/reference.py), negation as the exact complement of every node,
sort orders against a Python sort, and keyset paging while leads are being added.

The dataset is built once per module through the API, in an organization of its own."""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from random import Random
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from tests.conftest import Org, new_org
from tests.search.reference import (
    FIELDS,
    MOMENT,
    NUMBER,
    FieldInfo,
    Obj,
    Reference,
    SortKey,
    custom_field_info,
    sorted_ids,
)

URL = "/api/v1/data/search/"
Json = dict[str, Any]
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- The dataset ---------------------------------------------------------------------------------

LEAD_NAMES: list[str | None] = [
    "Acme Widgets, Inc.",
    "ACME widgets",
    "Acme-Corp",
    "AcmeSub Ltd.",
    "Globex Corporation",
    "globex",
    None,
    "Northwind Traders",
    "North Wind",
    "O'Brien & Sons",
    "R&D Labs (EU)",
    "100% Organic",
    "C++ Consulting",
    "foo.bar baz",
    "x_y z",
    "The The",
    "",
    "  Spaced   Out  ",
    "Initech",
    "initech LLC",
    None,
    "Jean-Luc Picard Inc",
    "Widgets Widgets",
    "a.b.c",
    "Café Zürich",
    "ÉCOLE Ünion",
]
DESCRIPTIONS = [
    None,
    None,
    "",
    "Big customer; renewal due",
    "north-east region",
    "Acme partner since 2019",
    "Widgets, gadgets & more",
    "the best",
    "see: https://example.com/acme",
    "inc.",
    "follow up w/ Jane",
]
CONTACT_NAMES = [
    "Jane Doe",
    "JANE DOE",
    "John O'Reilly",
    None,
    "Dr. Who",
    "jean-luc",
    "Ada",
    "María José",
]
TITLES = ["CEO", "ceo", "Vice President", "VP, Sales", None, "", "Head of R&D"]
EMAILS = [
    "jane@acme.com",
    "Jane.Doe@Acme.COM",
    "info@globex.com",
    "x_y@z.io",
    "sales+eu@northwind.co.uk",
    "o.brien@example.org",
]
PHONES = ["+14155550100", "415-555-0101", "+442071838750", "+1 (650) 333-4444"]
STATUSES = ["Potential", "Bad Fit", "Qualified"]
SEATS = [None, None, 0, 1, 2.5, 10, 10, 75, -3, 250]
TAGS = ["alpha", "Beta", "beta gamma", "delta-1", "Ünï"]
INDUSTRIES = [None, None, "", "Software", "software services", "Hardware & Software", "Bio-tech"]
RENEWALS = [None, "2024-01-01", "2024-01-05", "2024-01-06", "2024-01-10", "2024-02-29"]
SEEN = [
    None,
    None,
    "2024-01-05T23:30:00-05:00",
    "2024-01-05T00:00:00Z",
    "2024-01-06T12:00:00",
    "2024-01-05T04:59:59.999999+00:00",
]
RENEWAL_PROBES = ["2023-12-31", "2024-01-04", "2024-01-09", "2024-02-28"]

ABSENT_WORDS = ["zzz", "acm", "widget", "corp.", "%", "_", "o'", "(eu)", "-", "&", "w/", "1"]
TIMEZONES: list[str | None] = [None, "0", "-5", "5.5", "-11", "13"]
PHONE_SPELLINGS = ["415-555-0100", "+1 415 555 0101", "(650) 333-4444", "12", "+44 20 7183 8750"]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)


class Api:
    def __init__(self, client: TestClient, org: Org) -> None:
        self.client = client
        self.org = org

    def post(self, url: str, body: Json, headers: dict[str, str] | None = None) -> Json:
        response = self.client.post(url, json=body, auth=self.org.auth, headers=headers)
        assert response.status_code == 200, (body, response.text)
        result: Json = response.json()
        return result

    def search(self, body: Json, tz: str | None = None) -> Json:
        return self.post(URL, body, {"X-TZ-Offset": tz} if tz is not None else None)

    def walk(self, body: Json, limit: int, tz: str | None = None) -> tuple[list[str], int]:
        """Every id of a search, page by page, and the count of the first page."""
        ids: list[str] = []
        cursor = None
        total = -1
        for page_number in itertools.count():
            page = self.search(
                {**body, "_limit": limit, "cursor": cursor, "include_counts": page_number == 0},
                tz,
            )
            if page_number == 0:
                total = page["count"]["total"]
            assert len(page["data"]) <= limit
            ids += [item["id"] for item in page["data"]]
            cursor = page["cursor"]
            if cursor is None:
                return ids, total
            assert len(page["data"]) == limit, "a short page with a cursor"
            assert page_number < 500


@dataclass
class Dataset:
    api: Api
    dialect: str
    cf: dict[str, str]  # "seats", "tags", "industry", "renewal", "seen" -> custom field id
    custom: dict[str, FieldInfo]
    statuses: dict[str, str]  # label -> id
    objects: dict[str, list[Obj]] = field(default_factory=dict)
    name_rank: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<dataset of {len(self.objects['lead'])} leads on {self.dialect}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def by_id(self, kind: str) -> dict[str, Obj]:
        return {o.id: o for o in self.objects[kind]}

    def expected(self, kind: str, query: Json, tz: str | None) -> set[str]:
        zone: tzinfo = UTC if tz is None else timezone(timedelta(hours=float(tz)))
        reference = Reference(self.custom, datetime.now(UTC), zone)
        return {o.id for o in self.objects[kind] if reference.matches(query, o)}

    def describe(self, kind: str, ids: set[str]) -> list[Any]:
        objs = self.by_id(kind)
        return sorted((repr(objs[i].values.get("name")), i) for i in ids)


def build_dataset(api: Api, dialect: str) -> Dataset:
    rng = Random(20240105)
    cf = {
        "seats": api.post("/api/v1/custom_field/lead/", {"name": "Seats", "type": "number"}),
        "tags": api.post(
            "/api/v1/custom_field/lead/",
            {"name": "Tags", "type": "choices", "choices": TAGS, "accepts_multiple_values": True},
        ),
        "industry": api.post("/api/v1/custom_field/lead/", {"name": "Industry", "type": "text"}),
        "renewal": api.post("/api/v1/custom_field/lead/", {"name": "Renewal", "type": "date"}),
        "seen": api.post("/api/v1/custom_field/lead/", {"name": "Seen", "type": "datetime"}),
    }
    ids = {key: value["id"] for key, value in cf.items()}
    custom = {
        ids["seats"]: custom_field_info("number", False),
        ids["tags"]: custom_field_info("choices", True),
        ids["industry"]: custom_field_info("text", False),
        ids["renewal"]: custom_field_info("date", False),
        ids["seen"]: custom_field_info("datetime", False),
    }
    leads: list[Obj] = []
    contacts: list[Obj] = []
    emails: list[Obj] = []
    phones: list[Obj] = []
    statuses: dict[str, str] = {}
    for i, name in enumerate(LEAD_NAMES):
        body: Json = {"status": STATUSES[i % len(STATUSES)], "contacts": []}
        if name is not None:
            body["name"] = name
        description = rng.choice(DESCRIPTIONS)
        if description is not None:
            body["description"] = description
        # Every fifth lead has no contacts; the others 1-3.
        for _ in range(0 if i % 5 == 2 else rng.choice([1, 1, 2, 3])):
            contact: Json = {}
            for key, pool in (("name", CONTACT_NAMES), ("title", TITLES)):
                value = rng.choice(pool)
                if value is not None:
                    contact[key] = value
            contact["emails"] = [
                {"email": e, "type": rng.choice(["office", "home"])}
                for e in rng.sample(EMAILS, rng.choice([0, 0, 1, 2]))
            ]
            contact["phones"] = [
                {"phone": p, "type": rng.choice(["office", "mobile"])}
                for p in rng.sample(PHONES, rng.choice([0, 1, 1, 2]))
            ]
            body["contacts"].append(contact)
        values = {
            "seats": rng.choice(SEATS),
            "tags": rng.sample(TAGS, rng.choice([0, 1, 1, 2, 3])) or None,
            "industry": rng.choice(INDUSTRIES),
            "renewal": rng.choice(RENEWALS),
            "seen": rng.choice(SEEN),
        }
        for key, value in values.items():
            if value is not None:
                body[f"custom.{ids[key]}"] = value
        created = api.post("/api/v1/lead/", body)
        statuses[created["status_label"]] = created["status_id"]
        lead = Obj(
            "lead",
            created["id"],
            {
                "id": created["id"],
                "name": created["name"],
                "display_name": created["name"],
                "description": created["description"],
                "status_id": created["status_id"],
                "status_label": created["status_label"],
                "date_created": parse_time(created["date_created"]),
                "custom": {
                    k.removeprefix("custom."): v
                    for k, v in created.items()
                    if k.startswith("custom.")
                },
            },
            {"contact": [], "contact_email": [], "contact_phone": []},
        )
        leads.append(lead)
        for c in created["contacts"]:
            contact_obj = Obj(
                "contact",
                c["id"],
                {
                    "id": c["id"],
                    "lead_id": lead.id,
                    "name": c["name"],
                    "title": c["title"],
                    "date_created": parse_time(c["date_created"]),
                    "num_emails": len(c["emails"]),
                    "num_phones": len(c["phones"]),
                },
                {"lead": [lead], "contact_email": [], "contact_phone": []},
            )
            contacts.append(contact_obj)
            lead.related["contact"].append(contact_obj)
            for kind, rows, key, items in (
                ("contact_email", emails, "email", c["emails"]),
                ("contact_phone", phones, "phone", c["phones"]),
            ):
                for item in items:
                    row = Obj(
                        kind,
                        f"{kind}:{len(rows)}",
                        {key: item[key], "type": item["type"]},
                        {"contact": [contact_obj], "lead": [lead]},
                    )
                    rows.append(row)
                    contact_obj.related[kind].append(row)
                    lead.related[kind].append(row)
        lead.values["num_contacts"] = len(lead.related["contact"])
        lead.values["num_email_addresses"] = len(lead.related["contact_email"])
        lead.values["num_phone_numbers"] = len(lead.related["contact_phone"])
    return Dataset(
        api,
        dialect,
        ids,
        custom,
        statuses,
        {"lead": leads, "contact": contacts, "contact_email": emails, "contact_phone": phones},
    )


@pytest.fixture(scope="module")
def module_client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def ds(
    module_client: TestClient, session_factory: sessionmaker[Session], engine: Engine
) -> Dataset:
    api = Api(module_client, new_org(session_factory, "Properties"))
    dataset = build_dataset(api, engine.dialect.name)
    assert dataset.statuses.keys() == set(STATUSES)
    dataset.name_rank = name_ranks(dataset)
    return dataset


def name_ranks(ds: Dataset) -> dict[str, int]:
    """The database's collation of lead names, read from a search sorted by name (SQLite
    compares bytes, PostgreSQL its locale)."""
    body = {"query": {"type": "match_all"}, "sort": [sort_spec("name", "asc", ds)]}
    ordered, _ = ds.api.walk(body, 200)
    leads = ds.by_id("lead")
    names = [leads[i].values["name"] for i in ordered]
    present = [n for n in names if n is not None]
    assert names[len(present) :] == [None] * (len(names) - len(present)), "NULL names last"
    distinct = list(dict.fromkeys(present))
    # Equal names sit together: the order is a total order on names.
    assert [n for n, _ in itertools.groupby(present)] == distinct
    if ds.dialect == "sqlite":
        assert distinct == sorted(distinct)
    return {name: rank for rank, name in enumerate(distinct)}


# --- Vocabulary: words and values from the data, and some absent ones -----------------------------


@dataclass
class Pool:
    """Candidate query values for one field: its words (and their beginnings), its values and
    their runs of two words."""

    words: list[str]
    values: list[str]


def pool(texts: Iterable[str], absent: Sequence[str] = ()) -> Pool:
    words: set[str] = set(absent)
    values: set[str] = set()
    for text in texts:
        split = text.split()
        tokens = re.findall(r"\w+", text)
        words |= set(split) | set(tokens) | {t[:n] for t in tokens for n in (1, 2, 3)}
        values |= {text, *(" ".join(p) for p in itertools.pairwise(split))}
        values |= {" ".join(p) for p in itertools.pairwise(tokens)}
    return Pool(sorted(words), sorted(values) or sorted(words))


@dataclass
class Vocab:
    general: Pool
    fields: dict[tuple[str, str], Pool]  # (object type, field name or custom key)
    times: list[datetime]
    ids: dict[str, list[str]]


def vocabulary(ds: Dataset) -> Vocab:
    fields: dict[tuple[str, str], set[str]] = {}
    for kind, objs in ds.objects.items():
        for obj in objs:
            for key, value in obj.values.items():
                if isinstance(value, str) and key not in ("id", "lead_id", "status_id"):
                    fields.setdefault((kind, key), set()).add(value)
    for key, cf_id in ds.cf.items():
        texts = fields.setdefault(("lead", key), set())
        for obj in ds.objects["lead"]:
            value = obj.values["custom"].get(cf_id)
            items = value if isinstance(value, list) else [value]
            texts |= {v for v in items if isinstance(v, str) and v}
    fields[("lead", "status_label")] |= {"Customer"}
    fields[("contact_email", "email")] |= set(EMAILS)
    fields[("contact_phone", "phone")] |= set(PHONE_SPELLINGS)
    fields[("contact_email", "type")] |= {"Office", "other"}
    everything = set().union(*fields.values())
    return Vocab(
        general=pool(everything, ABSENT_WORDS),
        fields={key: pool(texts, ABSENT_WORDS[:3]) for key, texts in fields.items()},
        times=sorted(o.values["date_created"] for o in ds.objects["lead"]),
        ids={kind: sorted(o.id for o in ds.objects[kind]) for kind in ("lead", "contact")},
    )


NUMBERS = {
    "seats": [-10.5, -3, 0, 1, 2, 2.5, 10, 10.0, 75, 100, 250, 1000],
    "count": [-1, 0, 0.5, 1, 2, 3, 4, 6],
}


# --- Strategies ----------------------------------------------------------------------------------

RELATED = {
    "lead": ("contact", "contact_email", "contact_phone"),
    "contact": ("lead", "contact_email", "contact_phone"),
    "contact_email": ("contact", "lead"),
    "contact_phone": ("contact", "lead"),
}


def negatable(strategy: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    """A node without `negate`, with `negate: false` (the UI's form) or negated."""
    return st.tuples(strategy, st.sampled_from([None, False, True, True])).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "negate": pair[1]}
    )


def cased(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    change = st.sampled_from([str, str, str.upper, str.lower, str.title, lambda s: f"  {s} "])
    return st.tuples(strategy, change).map(lambda pair: pair[1](pair[0]))


class Trees:
    """Strategies for query trees on one dataset."""

    def __init__(self, ds: Dataset, vocab: Vocab) -> None:
        self.ds = ds
        self.vocab = vocab
        self._cache: dict[tuple[str, int], st.SearchStrategy[Json]] = {}

    def __repr__(self) -> str:
        return "<trees>"

    # Values

    def phrase(self, source: Pool) -> st.SearchStrategy[str]:
        """Words of the field, its values, words from anywhere, or nothing at all."""
        general = self.vocab.general
        return cased(
            st.one_of(
                st.sampled_from(source.values),
                st.lists(st.sampled_from(source.words), min_size=1, max_size=3).map(" ".join),
                st.lists(st.sampled_from(general.words), min_size=1, max_size=2).map(" ".join),
                st.sampled_from(["", "   "]),
            )
        )

    def text(self, source: Pool) -> st.SearchStrategy[Json]:
        mode = st.sampled_from([None, "full_words", "phrase", "beginning_of_words", "exact_value"])
        return st.tuples(mode, self.phrase(source)).map(
            lambda pair: {"type": "text", "value": pair[1]} | ({"mode": pair[0]} if pair[0] else {})
        )

    def term(self, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Json]:
        return st.lists(values, max_size=3).map(lambda vs: {"type": "term", "values": vs})

    def numbers(self, pool: str) -> st.SearchStrategy[Json]:
        number = st.sampled_from(NUMBERS[pool])
        ranges = st.fixed_dictionaries(
            {"type": st.just("number_range")},
            optional={"gt": number, "gte": number, "lt": number, "lte": number},
        )
        return st.one_of(ranges, self.term(number), st.just({"type": "exists"}))

    def moment(
        self, dates: list[str], times: list[datetime] | None = None
    ) -> st.SearchStrategy[Json | None]:
        """Moments near the data: lead creation times (to the microsecond) for datetime
        fields, times on and around the given days for date fields, and relative ones."""

        def fixed_utc(pair: tuple[datetime, str]) -> Json:
            text = pair[0].isoformat(timespec="microseconds")
            value = {"z": text + "Z", "o": text + "+00:00"}.get(pair[1], text)
            return {"type": "fixed_utc", "value": value}

        if dates:
            days = [datetime.fromisoformat(d) for d in dates]
            times = [*(times or []), *(d + timedelta(hours=h) for d in days for h in (0, 12, 23.5))]
        else:
            shifts = [timedelta(microseconds=m) for m in (-1, 0, 1)]
            times = [t + shift for t in self.vocab.times for shift in shifts]
        today = date.today()
        local_dates = dates or [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]
        offset = st.fixed_dictionaries(
            {
                "type": st.just("offset"),
                "direction": st.sampled_from(["past", "future"]),
                "moment": st.just({"type": "now"}),
                "offset": st.fixed_dictionaries(
                    {}, optional={"days": st.integers(0, 2), "hours": st.integers(0, 1)}
                ),
            },
            optional={"which_day_end": st.sampled_from(["start", "end"])},
        )
        return st.one_of(
            st.tuples(st.sampled_from(times), st.sampled_from("zon")).map(fixed_utc),
            st.fixed_dictionaries(
                {
                    "type": st.just("fixed_local_date"),
                    "value": st.sampled_from(local_dates),
                    "which": st.sampled_from(["start", "end"]),
                }
            ),
            st.none(),
            st.just({"type": "now"}),
            offset,
        )

    def moments(
        self, dates: list[str], times: list[datetime] | None = None
    ) -> st.SearchStrategy[Json]:
        moment = self.moment(dates, times)
        ranges = st.fixed_dictionaries(
            {"type": st.just("moment_range")},
            optional={
                "on_or_after": moment,
                "before": moment,
                "after": moment,
                "on_or_before": moment,
            },
        )
        return st.one_of(ranges, st.just({"type": "exists"}))

    # Conditions per field

    def conditions(self, kind: str, name: str) -> st.SearchStrategy[Json]:
        info = FIELDS[kind][name]
        exists = st.just({"type": "exists"})
        if info.reference_type is not None:
            if name == "status_id":
                ids = [*self.ds.statuses.values(), "stat_nope"]
            else:
                ids = [*self.vocab.ids[info.reference_type], "lead_nope", "cont_nope"]
            values = st.sampled_from(ids)
            reference = st.lists(values, max_size=3).map(
                lambda vs: {
                    "type": "reference",
                    "reference_type": info.reference_type,
                    "object_ids": vs,
                }
            )
            ids_pool = Pool(ids, ids + [i.lower() for i in ids])
            return st.one_of(reference, self.text(ids_pool), self.term(values), exists)
        if info.kind == NUMBER:
            return self.numbers("count")
        if info.kind == MOMENT:
            return self.moments([])
        source = self.vocab.fields[(kind, "name" if name == "display_name" else name)]
        return st.one_of(
            self.text(source), self.term(cased(st.sampled_from(source.values))), exists
        )

    def custom(self, key: str) -> st.SearchStrategy[Json]:
        if key == "seats":
            return self.numbers("seats")
        if key == "seen":
            instants = [datetime.fromisoformat(v) for v in SEEN if v]
            utc = [(i if i.tzinfo else i.replace(tzinfo=UTC)).astimezone(UTC) for i in instants]
            near = [
                i.replace(tzinfo=None) + timedelta(microseconds=m) for i in utc for m in (-1, 0, 1)
            ]
            return self.moments(["2024-01-05", "2024-01-06"], near)
        if key == "renewal":
            return self.moments([*RENEWAL_PROBES, *(d for d in RENEWALS if d)])
        source = self.vocab.fields[("lead", key)]
        values = cased(st.sampled_from(source.values))
        return st.one_of(self.text(source), self.term(values), st.just({"type": "exists"}))

    # Nodes

    def leaf(self, kind: str) -> st.SearchStrategy[Json]:
        if (kind, -1) not in self._cache:
            self._cache[(kind, -1)] = self._leaf(kind)
        return self._cache[(kind, -1)]

    def _leaf(self, kind: str) -> st.SearchStrategy[Json]:
        def on(name: str) -> st.SearchStrategy[Json]:
            spec = {"type": "regular_field", "object_type": kind, "field_name": name}
            return self.conditions(kind, name).map(
                lambda c: {"type": "field_condition", "field": spec, "condition": c}
            )

        def on_custom(key: str) -> st.SearchStrategy[Json]:
            spec = {"type": "custom_field", "custom_field_id": self.ds.cf[key]}
            return self.custom(key).map(
                lambda c: {"type": "field_condition", "field": spec, "condition": c}
            )

        options = [on(name) for name in FIELDS[kind]]
        if kind == "lead":
            options += [on_custom(key) for key in self.ds.cf]
        if kind in self.vocab.ids:
            ids = self.vocab.ids[kind] + ["lead_nope"]
            options.append(st.sampled_from(ids).map(lambda i: {"type": "id", "value": i}))
        options += [
            st.just({"type": "match_all"}),
            st.sampled_from(["lead", "contact", "contact_email"]).map(
                lambda t: {"type": "object_type", "object_type": t}
            ),
            self.text(self.vocab.general),
        ]
        return st.one_of(options)

    def node(self, kind: str, depth: int) -> st.SearchStrategy[Json]:
        key = (kind, depth)
        if key not in self._cache:
            leaf = self.leaf(kind)
            if depth == 0:
                self._cache[key] = negatable(leaf)
            else:
                child = self.node(kind, depth - 1)
                boolean = st.tuples(
                    st.sampled_from(["and", "or"]), st.lists(child, max_size=3)
                ).map(lambda pair: {"type": pair[0], "queries": pair[1]})
                related = st.one_of(
                    [self.has_related(kind, other, depth - 1) for other in RELATED[kind]]
                )
                self._cache[key] = negatable(st.one_of(leaf, boolean, related))
        return self._cache[key]

    def single(self, kind: str) -> st.SearchStrategy[Json]:
        """One condition on the object or on its related objects, maybe negated."""
        if (kind, -2) not in self._cache:
            related = [self.has_related(kind, other, 0) for other in RELATED[kind]]
            self._cache[(kind, -2)] = negatable(st.one_of(self.leaf(kind), st.one_of(related)))
        return self._cache[(kind, -2)]

    def has_related(self, kind: str, related: str, depth: int) -> st.SearchStrategy[Json]:
        return st.tuples(self.node(related, depth), st.booleans()).map(
            lambda pair: (
                {
                    "type": "has_related",
                    "related_object_type": related,
                    "related_query": pair[0],
                }
                | ({"this_object_type": kind} if pair[1] else {})
            )
        )


@pytest.fixture(scope="module")
def trees(ds: Dataset) -> Trees:
    return Trees(ds, vocabulary(ds))


def top(kind: str, tree: Json) -> Json:
    return {"type": "and", "queries": [{"type": "object_type", "object_type": kind}, tree]}


# --- Random trees against the reference ----------------------------------------------------------


@settings(SETTINGS, max_examples=400)
@given(data=st.data())
def test_single_conditions_match_the_reference(
    ds: Dataset, trees: Trees, data: st.DataObject
) -> None:
    """One condition (maybe negated, maybe on related objects): many cheap examples."""
    kind = data.draw(st.sampled_from(["lead", "lead", "lead", "contact"]), "kind")
    node = data.draw(trees.single(kind), "node")
    tz = data.draw(st.sampled_from(TIMEZONES), "tz")
    query = top(kind, node)
    found = [item["id"] for item in ds.api.search({"query": query, "_limit": 200}, tz)["data"]]
    expected = ds.expected(kind, query, tz)
    assert set(found) == expected, {
        "unexpected": ds.describe(kind, set(found) - expected),
        "missing": ds.describe(kind, expected - set(found)),
    }


@settings(SETTINGS, max_examples=200)
@given(data=st.data())
def test_random_trees_match_the_reference(ds: Dataset, trees: Trees, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["lead", "lead", "lead", "contact"]), "kind")
    tree = data.draw(trees.node(kind, data.draw(st.integers(1, 3), "depth")), "tree")
    tz = data.draw(st.sampled_from(TIMEZONES), "tz")
    limit = data.draw(st.sampled_from([4, 11, 200]), "limit")
    query = top(kind, tree)
    found, total = ds.api.walk({"query": query}, limit, tz)
    expected = ds.expected(kind, query, tz)
    note(json.dumps(tree))
    assert len(found) == len(set(found)), "an id came twice"
    assert set(found) == expected, {
        "unexpected": ds.describe(kind, set(found) - expected),
        "missing": ds.describe(kind, expected - set(found)),
    }
    assert total == len(expected)


@settings(SETTINGS, max_examples=80)
@given(data=st.data())
def test_negate_is_the_complement(ds: Dataset, trees: Trees, data: st.DataObject) -> None:
    """Whatever a node matches, the same node negated matches exactly the rest."""
    kind = data.draw(st.sampled_from(["lead", "lead", "contact"]), "kind")
    node = data.draw(trees.node(kind, 2), "node")
    flipped = {**node, "negate": not node.get("negate", False)}
    every = {o.id for o in ds.objects[kind]}
    plain, _ = ds.api.walk({"query": top(kind, node)}, 200)
    negated, _ = ds.api.walk({"query": top(kind, flipped)}, 200)
    assert set(plain).isdisjoint(negated)
    assert set(plain) | set(negated) == every


# --- Cases the properties found, pinned ----------------------------------------------------------


def renewal(ds: Dataset, key: str, moment: Json) -> Json:
    spec = {"type": "custom_field", "custom_field_id": ds.cf["renewal"]}
    condition = {"type": "moment_range", key: moment}
    return {"type": "field_condition", "field": spec, "condition": condition}


def regular(kind: str, name: str, condition: Json) -> Json:
    spec = {"type": "regular_field", "object_type": kind, "field_name": name}
    return {"type": "field_condition", "field": spec, "condition": condition}


JAN_5 = {"type": "fixed_local_date", "value": "2024-01-05", "which": "start"}
PINNED: dict[str, tuple[str, Any]] = {
    # A date field's day is after an instant when it starts after it: 2024-01-06 is after
    # the start of 2024-01-05 and not on or before it.
    "date after": ("lead", lambda ds: renewal(ds, "after", JAN_5)),
    "date on_or_before": ("lead", lambda ds: renewal(ds, "on_or_before", JAN_5)),
    "date after a utc instant": (
        "lead",
        lambda ds: renewal(ds, "after", {"type": "fixed_utc", "value": "2023-12-31T00:00:00Z"}),
    ),
    # Case folding beyond ASCII for whole values, as for words.
    "exact_value non-ascii": (
        "lead",
        lambda ds: regular(
            "lead", "name", {"type": "text", "mode": "exact_value", "value": "école ünion"}
        ),
    ),
    "term non-ascii": (
        "lead",
        lambda ds: regular("lead", "name", {"type": "term", "values": ["école ünion"]}),
    ),
    # Numbers compare as numbers whatever the type of the list's first value: 2.5 is not 2,
    # and 0.5 is not 0.
    "term fraction after a whole number (custom)": (
        "lead",
        lambda ds: {
            "type": "field_condition",
            "field": {"type": "custom_field", "custom_field_id": ds.cf["seats"]},
            "condition": {"type": "term", "values": [10, 2.5]},
        },
    ),
    "term fraction after a whole number": (
        "contact",
        lambda ds: regular("contact", "num_emails", {"type": "term", "values": [1, 0.5]}),
    ),
}


@pytest.mark.parametrize("case", sorted(PINNED))
def test_pinned_cases(ds: Dataset, case: str) -> None:
    kind, make = PINNED[case]
    query = top(kind, make(ds))
    found, _ = ds.api.walk({"query": query}, 200)
    expected = ds.expected(kind, query, None)
    assert expected, "the case selects something"
    assert set(found) == expected, {
        "unexpected": ds.describe(kind, set(found) - expected),
        "missing": ds.describe(kind, expected - set(found)),
    }


# --- Sorting -------------------------------------------------------------------------------------

SORT_KEYS = ("name", "date_created", "seats", "num_contacts")


def sort_spec(key: str, direction: str, ds: Dataset) -> Json:
    if key == "seats":
        spec: Json = {"type": "custom_field", "custom_field_id": ds.cf["seats"]}
    else:
        spec = {"type": "regular_field", "object_type": "lead", "field_name": key}
    return {"direction": direction, "field": spec}


def sort_key(key: str, direction: str, ds: Dataset) -> SortKey:
    descending = direction == "desc"
    if key == "name":
        ranks = ds.name_rank
        return SortKey(
            lambda o: None if o.values["name"] is None else ranks[o.values["name"]],
            True,
            descending,
        )
    if key == "seats":
        seats = ds.cf["seats"]
        return SortKey(lambda o: o.values["custom"].get(seats), True, descending)
    return SortKey(lambda o: o.values[key], False, descending)


@settings(SETTINGS, max_examples=50)
@given(data=st.data())
def test_sorted_pages_match_one_big_page_and_python(
    ds: Dataset, trees: Trees, data: st.DataObject
) -> None:
    keys = data.draw(st.lists(st.sampled_from(SORT_KEYS), min_size=1, max_size=2, unique=True))
    directions = data.draw(st.lists(st.sampled_from(["asc", "desc"]), min_size=2, max_size=2))
    query = top("lead", data.draw(st.one_of(st.just({"type": "match_all"}), trees.node("lead", 1))))
    limit = data.draw(st.integers(1, 4), "limit")
    body = {
        "query": query,
        "sort": [sort_spec(k, d, ds) for k, d in zip(keys, directions, strict=False)],
    }
    whole = ds.api.search({**body, "_limit": 200})
    assert whole["cursor"] is None
    everything = [item["id"] for item in whole["data"]]
    paged, _ = ds.api.walk(body, limit)
    assert paged == everything
    assert len(set(paged)) == len(paged)
    # Which leads match is the other tests' business: this one checks their order.
    matched = set(everything)
    leads = [o for o in ds.objects["lead"] if o.id in matched]
    python = sorted_ids(leads, [sort_key(k, d, ds) for k, d in zip(keys, directions, strict=False)])
    assert everything == python


# --- Paging while leads are added -----------------------------------------------------------------

INSERT_SORTS: dict[str, list[tuple[str, str]]] = {
    "default": [],
    "date_created asc": [("date_created", "asc")],
    "name asc": [("name", "asc")],
    "name desc, seats asc": [("name", "desc"), ("seats", "asc")],
    "seats desc": [("seats", "desc")],
}


@dataclass
class Growing:
    api: Api
    seats: str

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("<growing>")


@pytest.fixture(scope="module")
def growing(module_client: TestClient, session_factory: sessionmaker[Session]) -> Growing:
    api = Api(module_client, new_org(session_factory, "Paging"))
    seats = api.post("/api/v1/custom_field/lead/", {"name": "Seats", "type": "number"})["id"]
    return Growing(api, seats)


lead_names = st.sampled_from([None, "", "b", "a", "a", "c", "B", "ab"])
lead_seats = st.sampled_from([None, None, 0, 1, 1, 5])


@settings(SETTINGS, max_examples=20)
@given(
    sort=st.sampled_from(sorted(INSERT_SORTS)),
    limit=st.integers(2, 3),
    initial=st.lists(st.tuples(lead_names, lead_seats), min_size=3, max_size=8),
    inserts=st.lists(
        st.lists(st.tuples(lead_names, lead_seats), max_size=2), min_size=1, max_size=6
    ),
)
def test_paging_while_leads_are_added(
    growing: Growing,
    sort: str,
    limit: int,
    initial: list[tuple[str | None, int | None]],
    inserts: list[list[tuple[str | None, int | None]]],
) -> None:
    marker = f"batch{secrets.token_hex(4)}"

    def add(name: str | None, seats: int | None) -> str:
        body: Json = {"description": f"{marker} lead"}
        if name is not None:
            body["name"] = name
        if seats is not None:
            body[f"custom.{growing.seats}"] = seats
        return str(growing.api.post("/api/v1/lead/", body)["id"])

    before = {add(*spec) for spec in initial}
    query = {
        "type": "field_condition",
        "field": {"type": "regular_field", "object_type": "lead", "field_name": "description"},
        "condition": {"type": "text", "value": marker},
    }
    specs = []
    for key, direction in INSERT_SORTS[sort]:
        spec = {"type": "regular_field", "object_type": "lead", "field_name": key}
        if key == "seats":
            spec = {"type": "custom_field", "custom_field_id": growing.seats}
        specs.append({"direction": direction, "field": spec})
    body: Json = {"query": query, "sort": specs, "_limit": limit}
    seen: list[str] = []
    added: set[str] = set()
    cursor = None
    for page_number in itertools.count():
        page = growing.api.search({**body, "cursor": cursor})
        seen += [item["id"] for item in page["data"]]
        cursor = page["cursor"]
        if cursor is None:
            break
        if page_number < len(inserts):
            added |= {add(*spec) for spec in inserts[page_number]}
        assert page_number < 100
    assert len(seen) == len(set(seen)), "an id came twice"
    assert before <= set(seen), "a lead that existed before the walk was skipped"
    assert set(seen) <= before | added
    if sort == "default":  # newest first: leads added during the walk sort before the cursor
        assert not set(seen) & added
    if sort == "date_created asc":  # oldest first: they sort after it
        assert added <= set(seen)
