"""`clove seed`: fill an organization with realistic leads, contacts, emails, phones and addresses.

Made for benchmarks and demos, so it is built for speed:

* Content comes column by column from pools of names and words precomputed once. A draw is two
  random bytes indexing a 65,536-entry table (weights are baked into the table), so a column of
  a million draws is one `map` at C speed rather than a million Python calls.
* Rows are written set-based, in chunks, so memory stays flat. PostgreSQL gets `COPY ... FROM
  STDIN` text in big blocks on three connections (leads and contacts first, then emails and
  phones in parallel); SQLite gets `executemany` in one transaction per chunk. Writer threads
  store earlier chunks while the main thread generates the next.
* On PostgreSQL as a superuser, the per-row foreign-key triggers are skipped (see
  `_may_skip_foreign_key_checks`); they are more than half of the server's work.
* Ids have the format of `kit.ids` and are random, except that the ids of a chunk share a
  leading stamp of digits that grows from chunk to chunk, and come sorted: index inserts then go
  to the right edge of the indexes instead of all over them (twice as fast at a million leads).
* Content (names, statuses, counts, dates relative to now) is deterministic for a given `--seed`,
  number of leads, chunk size and the organization's statuses, members and custom fields. Ids
  are not (`secrets`), so seeding two organizations, or one twice, with one seed never collides.

One summary event (object_type `import`, action `completed`) records the run; there is no event
per row.
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import secrets
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain, repeat
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
from clove.db import is_sqlite
from clove.event.service import Actor, record_event
from clove.kit.dates import utcnow
from clove.kit.ids import _DROPPED, _TO_BASE62, PREFIX_LENGTHS
from clove.models import CustomField, LeadStatus, Membership, Organization

DEFAULT_CHUNK = 20_000
SPAN_DAYS = 730  # leads are spread over the last two years
_STAMP_DIGITS = 9


class SeedError(Exception):
    """A problem the user can fix (no organization, several, unknown id, no admin)."""


# --- ids ------------------------------------------------------------------------------------


def batch_ids(prefix: str, n: int, stamp: str = "") -> list[str]:
    """`n` fresh ids in the format of `kit.ids.new_id(prefix)`, from one batch of random bytes.

    With a `stamp` (digits), each id starts with it and the batch comes back sorted: successive
    batches with increasing stamps then insert at the right edge of the primary-key and foreign-key
    indexes instead of all over them, which keeps a large load in the database's cache.
    """
    length = PREFIX_LENGTHS[prefix] - len(stamp)
    need = n * length
    buf = b""
    while len(buf) < need:
        # 8 of 256 byte values are dropped: ask for ~4 % more than needed.
        more = need - len(buf)
        buf += secrets.token_bytes(more + more // 24 + 64).translate(_TO_BASE62, _DROPPED)
    text = buf[:need].decode()
    head = prefix + "_" + stamp
    ids = [head + text[i : i + length] for i in range(0, need, length)]
    if stamp:
        ids.sort()
    return ids


# --- sampling -------------------------------------------------------------------------------

_SLOTS = 65_536


def _u16(rng: random.Random, n: int) -> array[int]:
    return array("H", rng.randbytes(2 * n))


class _Pick:
    """Draws items with fixed weights: each draw indexes a 65,536-slot table with 2 random bytes."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float] | None = None) -> None:
        if not items:
            raise ValueError("nothing to pick from")
        weights = list(weights) if weights is not None else [1.0] * len(items)
        total = float(sum(weights))
        exact = [w * _SLOTS / total for w in weights]
        counts = [int(x) for x in exact]
        # Largest remainders get the slots left over, so the table is exactly _SLOTS long.
        by_remainder = sorted(range(len(items)), key=lambda i: exact[i] - counts[i], reverse=True)
        for i in by_remainder[: _SLOTS - sum(counts)]:
            counts[i] += 1
        self.table: list[Any] = list(
            chain.from_iterable(repeat(item, c) for item, c in zip(items, counts, strict=True))
        )

    def draw(self, rng: random.Random, n: int) -> list[Any]:
        return list(map(self.table.__getitem__, _u16(rng, n)))


def _draw_by(rng: random.Random, picks: Sequence[_Pick], keys: Sequence[int]) -> list[Any]:
    """One draw per key, from the picker that the key selects (e.g. per country)."""
    tables = [p.table for p in picks]
    return [tables[k][u] for k, u in zip(keys, _u16(rng, len(keys)), strict=True)]


def _ascii_slug(text: str) -> str:
    for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("é", "e"), ("'", "")):
        text = text.replace(a, b).replace(a.upper(), b.capitalize())
    return "".join(c for c in text.lower() if c.isalnum())


def _words(text: str) -> list[str]:
    return list(dict.fromkeys(text.split()))


# --- pools ----------------------------------------------------------------------------------

FIRST_NAMES = _words(
    """James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara
    Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew
    Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul Donna
    Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie
    Ronald Rebecca Jason Laura Edward Sharon Jeffrey Cynthia Ryan Kathleen Jacob Amy Gary Angela
    Nicholas Shirley Eric Anna Jonathan Brenda Stephen Pamela Larry Emma Justin Nicole Scott Helen
    Brandon Samantha Benjamin Katherine Samuel Christine Gregory Rachel Patrick Carolyn Frank
    Janet Raymond Maria Jack Olivia Dennis Heather Jerry Diane Tyler Julie Aaron Joyce Jose
    Victoria Adam Ruth Nathan Lauren Henry Kelly Zachary Christina Oliver Amelia Harry Isla Ava
    Noah Mia Leo Freya Arthur Poppy Oscar Sophie Charlie Grace Alfie Chloe Lukas Hannah Leon Lena
    Finn Lea Jonas Leonie Marie Felix Johanna Maximilian Elias Katharina Moritz Jan Tim Julia
    Niklas Clara Jürgen Birgit Stefan Sabine Uwe Petra Wolfgang Ursula Klaus Renate Dieter Monika
    Priya Raj Wei Mei Hiroshi Yuki Carlos Sofia Diego Lucia Ahmed Fatima Omar Aisha Ivan Olga
    Pierre Camille Luca Giulia Sven Ingrid Mateo Valentina Chidi Amara Kwame Zanele"""
)
LAST_NAMES = _words(
    """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
    Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
    Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
    Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips
    Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
    Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
    Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo
    Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell
    Coleman Butler Henderson Barnes Fisher Vasquez Simmons Graham Marshall Owens Harrison
    Fernandez McDonald Woods Washington Kennedy Wells Hamilton Murray Ford Palmer Hunt Black Stone
    Shaw Lloyd Davies Owen Knight Mills Holmes Booth O'Brien O'Connor Byrne Walsh Fraser MacLeod
    Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer
    Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange
    Schmitt Werner Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann König Walter Huber
    Kaiser Fuchs Peters Lang Weiß Jung Hahn Vogel Friedrich Keller Günther Frank Berger Winkler
    Roth Beck Lorenz Baumann Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus Schumacher
    Krämer Vogt Stein Jäger Otto Sommer Groß Seidel Heinrich Brandt Haas Schreiber Graf Dietrich
    Ziegler Kuhn Pohl Engel Horn Busch Bergmann Voigt Sauer Arnold Wolff Pfeiffer Chen Wang Li
    Zhang Liu Singh Kumar Shah Tanaka Suzuki Sato Rossi Russo Ferrari Silva Santos Costa Dubois
    Laurent Novak Kowalski Nowak Jansen Andersen Nielsen Larsen Johansson Lindqvist Okafor Mensah"""
)
COMPANY_HEADS = _words(
    """Acme Apex Summit Northwind Blue Red Green Silver Golden Iron Granite Cedar Oak Maple Pine
    Willow Aspen River Lake Harbor Coastal Pacific Atlantic Northern Southern Eastern Western
    Central Pioneer Frontier Liberty Eagle Falcon Hawk Orion Nova Stellar Quantum Vertex Zenith
    Pinnacle Horizon Vista Crescent Beacon Anchor Compass Keystone Cornerstone Bright Clear Swift
    Bold Prime Core True Evergreen Redwood Sequoia Bluebird Sparrow Fox Bear Lion Tiger Atlas
    Titan Apollo Helios Polaris Meridian Lumen Vector Nimbus Cirrus Cobalt Crimson Amber Ivory Onyx
    Jade Sapphire Ruby Emerald Copper Bronze Steel Alpine Highland Prairie Meadow Canyon Mesa
    Sierra Delta Sterling Hudson Brooklyn Austin Denver Boston Chicago Camden Oxford Cambridge
    Kensington Windsor Bristol Thames Elbe Rhein Isar Alster Spree Hansa Nord Süd Lindner Weber
    Keller Hartmann Becker Fischer Harper Morgan Sullivan Carter Bennett Hayes Parker Whitman
    Lowell Franklin Hamilton Jefferson Lincoln Madison Monroe Sherwood Ashford Blackwell Whitfield
    Greystone Fairview Brightwater Clearwater Stonebridge Riverside Lakeside Hillcrest Oakridge
    Westbrook Eastgate Northgate Southbank Bluewave Ironclad Sunrise Sunset Moonlight Starlight
    Thunder Lightning Rocket Orbit Pixel Byte Cloudline Datastream Brightpath Greenleaf Goldcrest"""
)
COMPANY_TAILS = _words(
    """Systems Solutions Labs Technologies Software Analytics Logistics Freight Foods Farms Brewing
    Coffee Bakery Health Medical Dental Pharma Bio Energy Solar Power Capital Partners Ventures
    Holdings Group Consulting Advisors Legal Insurance Realty Properties Construction Builders
    Engineering Manufacturing Industries Robotics Motors Automotive Aerospace Marine Outdoor Apparel
    Design Studio Media Films Publishing Marketing Digital Networks Cloud Data Security Telecom
    Wireless Electronics Devices Supply Trading Imports Retail Markets Hospitality Hotels Travel
    Fitness Wellness Education Learning Academy Staffing Recruiting Logic Works Dynamics
    Interactive Goods Textiles Chemicals Materials Metals Plastics Packaging Printing"""
)
TITLES = [
    "CEO", "CTO", "CFO", "COO", "Founder", "Co-Founder", "President", "Owner",
    "VP of Sales", "VP Marketing", "VP Engineering", "Head of Operations", "Head of IT",
    "Sales Manager", "Account Executive", "Office Manager", "Procurement Manager",
    "Purchasing Director", "Marketing Manager", "Product Manager", "Software Engineer",
    "IT Director", "HR Manager", "Operations Manager", "Business Development Manager",
    "Customer Success Manager", "Controller", "General Manager", "Managing Director",
    "Geschäftsführer", "Prokurist", "Engineering Manager", "Analyst", "Consultant",
    "Director of Finance", "Executive Assistant", "Chief of Staff", "Partner",
]  # fmt: skip
_DESCRIPTION_HEADS = [
    "Family-owned business", "Fast-growing startup", "Mid-sized manufacturer",
    "Regional distributor", "Boutique agency", "Enterprise software vendor",
    "Independent consultancy", "B2B marketplace", "Nonprofit organization",
    "Publicly traded company", "Franchise operator", "Import and export firm",
    "Design and build contractor", "Specialty retailer", "Managed service provider",
]  # fmt: skip
_DESCRIPTION_TAILS = [
    "serving customers across North America.", "with offices in London and Manchester.",
    "headquartered in Berlin.", "looking to replace spreadsheets with a CRM.",
    "met at a trade show last spring.", "referred by an existing customer.",
    "evaluating vendors for next quarter.", "interested in the enterprise plan.",
    "currently using a competitor.", "with about 50 employees.", "with over 1,000 employees.",
    "expanding into new markets this year.", "asked for a follow-up call in March.",
    "signed up through the website.", "budget approved for the coming year.",
    "decision maker is the head of operations.", "needs an integration with their ERP.",
]  # fmt: skip
DESCRIPTIONS = [f"{a} {b}" for a in _DESCRIPTION_HEADS for b in _DESCRIPTION_TAILS]
CUSTOM_TEXTS = [
    "Inbound", "Outbound", "Referral", "Trade show", "Webinar", "Partner", "Cold call",
    "Newsletter", "LinkedIn", "Google Ads", "Enterprise", "SMB", "Mid-market", "Priority",
    "Follow up in Q3", "Needs demo", "Pilot running", "Champion identified", "Budget pending",
]  # fmt: skip

COUNTRIES = ("US", "GB", "DE")
_COUNTRY_WEIGHTS = (60, 22, 18)
_SUFFIXES = (
    (("", 30), (", Inc.", 30), (" LLC", 20), (" Corp.", 10), (" Co.", 10)),
    (("", 35), (" Ltd", 45), (" PLC", 8), (" Group", 12)),
    (("", 25), (" GmbH", 55), (" AG", 12), (" KG", 8)),
)
_TLDS = (
    ((".com", 70), (".io", 15), (".co", 8), (".net", 7)),
    ((".co.uk", 70), (".com", 20), (".uk", 10)),
    ((".de", 80), (".com", 20)),
)
_FREEMAIL = (
    (("gmail.com", 45), ("yahoo.com", 15), ("outlook.com", 15), ("icloud.com", 10),
     ("hotmail.com", 10), ("aol.com", 5)),
    (("gmail.com", 40), ("outlook.com", 20), ("hotmail.co.uk", 15), ("btinternet.com", 10),
     ("yahoo.co.uk", 15)),
    (("gmail.com", 30), ("gmx.de", 25), ("web.de", 25), ("t-online.de", 10), ("outlook.de", 10)),
)  # fmt: skip
# Phone prefixes that, followed by 7 more digits, make valid numbers: (E.164 prefix, type, kind)
# where kind "us" takes a US exchange (2-9, no N11, no 555) as its next three digits.
_US_AREAS = _words(
    """212 415 312 617 646 303 206 512 404 305 713 214 702 408 503 202 310 718 773 619 720 917
    347 480 602 615 704 919 612"""
)
_PHONE_PREFIXES = (
    [(f"+1{area}", "office", "us") for area in _US_AREAS]
    + [("+1917", "mobile", "us"), ("+1646", "mobile", "us"), ("+1415", "mobile", "us")],
    [("+44207", "office", ""), ("+44203", "office", ""), ("+44208", "office", ""),
     ("+44161", "office", ""), ("+44740", "mobile", ""), ("+44751", "mobile", ""),
     ("+44780", "mobile", ""), ("+44790", "mobile", ""), ("+44795", "mobile", ""),
     ("+44734", "mobile", "")],
    [("+49302", "office", ""), ("+49303", "office", ""), ("+49305", "office", ""),
     ("+49891", "office", ""), ("+49892", "office", ""), ("+49403", "office", ""),
     ("+49404", "office", ""), ("+49691", "office", ""), ("+49221", "office", ""),
     ("+491512", "mobile", ""), ("+491522", "mobile", ""), ("+49160", "mobile", ""),
     ("+49170", "mobile", ""), ("+491761", "mobile", ""), ("+491573", "mobile", "")],
)  # fmt: skip
_US_EXCHANGES = [f"{x}" for x in range(200, 1000) if x % 100 != 11 and x != 555]
_CITIES = (
    [("San Francisco", "CA", "941"), ("New York", "NY", "100"), ("Brooklyn", "NY", "112"),
     ("Austin", "TX", "787"), ("Dallas", "TX", "752"), ("Houston", "TX", "770"),
     ("Chicago", "IL", "606"), ("Boston", "MA", "021"), ("Seattle", "WA", "981"),
     ("Portland", "OR", "972"), ("Denver", "CO", "802"), ("Atlanta", "GA", "303"),
     ("Miami", "FL", "331"), ("Los Angeles", "CA", "900"), ("San Diego", "CA", "921"),
     ("Phoenix", "AZ", "850"), ("Nashville", "TN", "372"), ("Charlotte", "NC", "282"),
     ("Minneapolis", "MN", "554"), ("Philadelphia", "PA", "191"), ("Washington", "DC", "200"),
     ("Salt Lake City", "UT", "841"), ("Raleigh", "NC", "276"), ("Pittsburgh", "PA", "152")],
    [("London", "Greater London", code) for code in
     ("EC1A", "EC2M", "SW1A", "W1D", "N1", "E1", "SE1", "WC2N", "NW1")]
    + [("Manchester", "Greater Manchester", "M1"), ("Manchester", "Greater Manchester", "M4"),
       ("Birmingham", "West Midlands", "B1"), ("Leeds", "West Yorkshire", "LS1"),
       ("Bristol", "Bristol", "BS1"), ("Edinburgh", "Scotland", "EH1"),
       ("Glasgow", "Scotland", "G2"), ("Cambridge", "Cambridgeshire", "CB2"),
       ("Oxford", "Oxfordshire", "OX1"), ("Liverpool", "Merseyside", "L1"),
       ("Cardiff", "Wales", "CF10")],
    [("Berlin", "Berlin", "10"), ("Hamburg", "Hamburg", "20"), ("München", "Bayern", "80"),
     ("Köln", "Nordrhein-Westfalen", "50"), ("Frankfurt am Main", "Hessen", "60"),
     ("Stuttgart", "Baden-Württemberg", "70"), ("Düsseldorf", "Nordrhein-Westfalen", "40"),
     ("Leipzig", "Sachsen", "04"), ("Dresden", "Sachsen", "01"),
     ("Hannover", "Niedersachsen", "30"), ("Nürnberg", "Bayern", "90"),
     ("Bremen", "Bremen", "28"), ("Essen", "Nordrhein-Westfalen", "45")],
)  # fmt: skip
_STREETS = (
    _words("""Main Oak Pine Maple Cedar Elm Market Mission Broadway Park Lake Hill Washington
        Lincoln Madison Franklin Jefferson Spring Church High Center Union Water River Sunset
        Valley Ridge Harbor Commerce Grand"""),
    _words("""High Church Station Victoria Park King's Queen's Mill Bridge London York Albert
        George Castle Market Manor Grove Chapel Green"""),
    _words("""Haupt Bahnhof Schul Garten Berg Kirch Wald Linden Goethe Schiller Friedrich Mozart
        Rosen Birken Markt Dorf Wiesen Kant Beethoven Industrie"""),
)
_STREET_KINDS = (
    ["St", "Ave", "Blvd", "Rd", "Dr", "Way", "Ln", "Pl"],
    ["Street", "Road", "Lane", "Avenue", "Place", "Square", "Gardens", "Row"],
    ["straße", "weg", "allee", "platz", "ring"],
)
_UNITS = ["Suite 100", "Suite 210", "Suite 400", "Floor 3", "Floor 12", "Unit 4B", "Apt 7"]

_LEAD_COLUMNS = (
    "id", "organization_id", "name", "description", "url", "status_id", "custom",
    "created_by", "updated_by", "date_created", "date_updated",
)  # fmt: skip
_CONTACT_COLUMNS = (
    "id", "organization_id", "lead_id", "name", "title", "custom",
    "created_by", "updated_by", "date_created", "date_updated",
)  # fmt: skip
_EMAIL_COLUMNS = (
    "organization_id", "lead_id", "contact_id", "position", "type", "email", "email_lower",
)  # fmt: skip
_PHONE_COLUMNS = (
    "organization_id", "lead_id", "contact_id", "position", "type", "phone", "country",
)  # fmt: skip
_URL_COLUMNS = ("organization_id", "lead_id", "contact_id", "position", "type", "url")
_ADDRESS_COLUMNS = (
    "organization_id", "lead_id", "position", "label", "address_1", "address_2",
    "city", "state", "zipcode", "country",
)  # fmt: skip

_MISSING = object()


# --- target ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomFieldSpec:
    id: str
    type: str
    accepts_multiple_values: bool
    choices: list[Any]


@dataclass(frozen=True)
class SeedTarget:
    """What seeding an organization needs to know about it."""

    organization_id: str
    organization_name: str
    admin: AuthContext
    member_user_ids: list[str]
    status_ids: list[str]  # in position order
    lead_fields: list[CustomFieldSpec] = field(default_factory=list)
    contact_fields: list[CustomFieldSpec] = field(default_factory=list)


def resolve_target(engine: Engine, org_id: str | None) -> SeedTarget:
    """The organization to seed (the only one if `org_id` is None); raises SeedError."""
    with Session(engine) as session:
        if org_id:
            org = session.get(Organization, org_id)
            if org is None:
                raise SeedError(f"No organization with id {org_id!r}.")
        else:
            orgs = list(session.scalars(select(Organization).order_by(Organization.date_created)))
            if not orgs:
                raise SeedError("There is no organization yet: create one with `clove init`.")
            if len(orgs) > 1:
                listing = ", ".join(f"{o.id} ({o.name})" for o in orgs)
                raise SeedError(f"There are several organizations: {listing}. Pass --org-id.")
            org = orgs[0]
        members = list(
            session.scalars(
                select(Membership)
                .where(Membership.organization_id == org.id, Membership.is_active)
                .order_by(Membership.date_created, Membership.id)
            )
        )
        admins = [m for m in members if m.role_id == "admin"]
        if not admins:
            raise SeedError(f"Organization {org.id} has no active admin to record the seed as.")
        admin = admins[0]
        statuses = list(
            session.scalars(
                select(LeadStatus.id)
                .where(LeadStatus.organization_id == org.id)
                .order_by(LeadStatus.position, LeadStatus.date_created, LeadStatus.id)
            )
        )
        if not statuses:
            raise SeedError(f"Organization {org.id} has no lead statuses.")
        fields = list(
            session.scalars(
                select(CustomField)
                .where(CustomField.organization_id == org.id)
                .order_by(CustomField.position, CustomField.date_created, CustomField.id)
            )
        )

        def specs(object_type: str) -> list[CustomFieldSpec]:
            return [
                CustomFieldSpec(
                    f.id, f.type, bool(f.accepts_multiple_values), list(f.choices or [])
                )
                for f in fields
                if f.object_type == object_type
            ]

        return SeedTarget(
            organization_id=org.id,
            organization_name=org.name,
            admin=AuthContext(org.id, admin.user_id, admin.id, admin.role_id),
            member_user_ids=[m.user_id for m in members],
            status_ids=statuses,
            lead_fields=specs("lead"),
            contact_fields=specs("contact"),
        )


# --- generation -----------------------------------------------------------------------------


@dataclass
class _Table:
    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    count: int = 0
    copy_text: bytes = b""  # PostgreSQL: the rows as COPY text (then `rows` is emptied)


@dataclass
class _Chunk:
    leads: int
    tables: dict[str, _Table]


class _Clock:
    """Timestamps as whole seconds since midnight two years ago (small ints: fast arithmetic),
    formatted by table lookups with random milliseconds."""

    def __init__(self, now: datetime) -> None:
        now = now.replace(microsecond=0)
        day0 = datetime(now.year, now.month, now.day) - timedelta(days=SPAN_DAYS)
        self.now = int((now - day0).total_seconds()) - 1  # all times before `now`
        self.start = max(0, self.now - SPAN_DAYS * 86_400)
        self.span = self.now - self.start
        self.days = [(day0 + timedelta(days=i)).strftime("%Y-%m-%d ") for i in range(SPAN_DAYS + 1)]
        self.seconds = [
            f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
        ]
        self.millis = _Pick([f".{ms:03d}000" for ms in range(1000)])

    def format(self, rng: random.Random, *columns: list[int]) -> list[list[str]]:
        """Each column of times as text; row i of every column gets the same milliseconds, so
        that times in order (created <= updated) stay in order."""
        d, s = self.days, self.seconds
        millis = self.millis.draw(rng, len(columns[0]))
        return [
            [d[t // 86_400] + s[t % 86_400] + ms for t, ms in zip(values, millis, strict=True)]
            for values in columns
        ]


class _Generator:
    def __init__(self, target: SeedTarget, total: int, contacts_per_lead: int | None,
                 seed: int, null: str | None, now: datetime) -> None:  # fmt: skip
        self.rng = rng = random.Random(seed)
        self.target = target
        self.total = total
        self.contacts_per_lead = contacts_per_lead
        self.null = null
        self.clock = _Clock(now)
        # Id stamps grow with the chunk (see batch_ids); a random base per run.
        self.stamp_base = secrets.randbelow(max(1, 10**_STAMP_DIGITS - total))
        # PostgreSQL COPY text: backslashes doubled, every value a string.
        self.escape = null is not None
        self.positions: tuple[Any, Any] = ("0", "1") if self.escape else (0, 1)

        self.country = _Pick(range(len(COUNTRIES)), _COUNTRY_WEIGHTS)
        self.head = _Pick(range(len(COMPANY_HEADS)))
        self.tail = _Pick(range(len(COMPANY_TAILS)))
        self.head_slugs = [_ascii_slug(h) for h in COMPANY_HEADS]
        self.tail_slugs = [_ascii_slug(t) for t in COMPANY_TAILS]
        self.suffix = [_Pick(*zip(*table, strict=True)) for table in _SUFFIXES]
        self.tld = [_Pick(*zip(*table, strict=True)) for table in _TLDS]
        self.domain_sep = _Pick(("", "-"), (85, 15))
        self.url_prefix = _Pick(("https://www.", "https://", "http://www.", None), (45, 12, 3, 40))
        self.description = _Pick(
            [*DESCRIPTIONS, null], [1] * len(DESCRIPTIONS) + [len(DESCRIPTIONS) * 2]
        )  # about a third of the leads have one
        n_status = len(target.status_ids)
        # The first statuses (Potential, ...) are the most common.
        self.status = _Pick(target.status_ids, [n_status - i + 1 for i in range(n_status)])
        self.member = _Pick(target.member_user_ids)

        # Lead date_updated - date_created: a third unchanged, the rest up to about a year.
        deltas = [0] * 1400 + [int(rng.expovariate(1 / 30) * 86_400) for _ in range(2696)]
        self.update_delta = _Pick(deltas)
        # Contact date_created - lead date_created: mostly with the lead, some weeks later.
        later = [int(rng.expovariate(1 / 20) * 86_400) for _ in range(1024)]
        self.contact_delta = _Pick([*(rng.randrange(1, 120) for _ in range(3072)), *later])

        self.contacts = _Pick((1, 2, 3), (30, 45, 25))
        self.first = _Pick(range(len(FIRST_NAMES)))
        self.last = _Pick(range(len(LAST_NAMES)))
        self.title = _Pick([*TITLES, null], [1] * len(TITLES) + [len(TITLES) * 0.15])
        first_slugs = [_ascii_slug(f) for f in FIRST_NAMES]
        last_slugs = [_ascii_slug(f) for f in LAST_NAMES]
        self.first_slugs, self.last_slugs = first_slugs, last_slugs
        # Email local parts: (first-name form, separator, last-name form).
        forms = {
            "full": (first_slugs, last_slugs),
            "initial": ([s[:1] for s in first_slugs], [s[:1] for s in last_slugs]),
            "none": ([""] * len(first_slugs), [""] * len(last_slugs)),
            "cap": ([s.capitalize() for s in first_slugs], [s.capitalize() for s in last_slugs]),
        }
        patterns = (
            ("full", ".", "full", 40), ("initial", "", "full", 20), ("full", "", "none", 12),
            ("full", "_", "full", 6), ("full", "", "initial", 6), ("cap", ".", "cap", 8),
            ("full", "", "full", 8),
        )  # fmt: skip
        self.local_first = [forms[f][0] for f, _, _, _ in patterns]
        self.local_sep = [sep for _, sep, _, _ in patterns]
        self.local_last = [forms[last][1] for _, _, last, _ in patterns]
        self.pattern = _Pick(range(len(patterns)), [w for *_, w in patterns])
        self.emails = _Pick((1, 2), (80, 20))
        self.email_type = _Pick(("office", "other", "home"), (85, 10, 5))
        self.email2_type = _Pick(("home", "other"), (75, 25))
        self.personal_suffix = _Pick(
            ("", "1", "84", "77", "90", "2000", "_1"), (60, 8, 8, 8, 8, 4, 4)
        )
        self.freemail = [_Pick(*zip(*table, strict=True)) for table in _FREEMAIL]

        self.phones = _Pick((0, 1, 2), (30, 50, 20))
        self.phone_prefix = [_Pick(range(len(table))) for table in _PHONE_PREFIXES]
        flat = [p for table in _PHONE_PREFIXES for p in table]
        offsets = [0, len(_PHONE_PREFIXES[0]), len(_PHONE_PREFIXES[0]) + len(_PHONE_PREFIXES[1])]
        self.phone_offset = offsets
        self.phone_text = [p for p, _, _ in flat]
        self.phone_type = [t for _, t, _ in flat]
        self.phone_country = [
            COUNTRIES[c] for c, table in enumerate(_PHONE_PREFIXES) for _ in table
        ]
        us_exchange = _Pick(_US_EXCHANGES).table
        any_three = _Pick([f"{i:03d}" for i in range(1000)]).table
        self.phone_mid = [us_exchange if kind == "us" else any_three for _, _, kind in flat]
        self.four_digits = _Pick([f"{i:04d}" for i in range(10_000)])
        self.has_url = _Pick((True, False), (15, 85))

        self.has_address = _Pick((True, False), (60, 40))
        self.address_label = _Pick(("business", "mailing", "other"), (75, 15, 10))
        self.city = [_Pick(range(len(cities))) for cities in _CITIES]
        self.street = [_Pick(streets) for streets in _STREETS]
        self.street_kind = [_Pick(kinds) for kinds in _STREET_KINDS]
        # House numbers: mostly small.
        self.house_number = _Pick(
            [str(i) for i in (*range(1, 400), *range(400, 9999, 7))], [4] * 399 + [1] * 1372
        )
        self.unit = _Pick([*_UNITS, null], [1] * len(_UNITS) + [len(_UNITS) * 4])
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        self.inward = _Pick([f"{d}{a}{b}" for d in range(10) for a in letters for b in letters])
        self.two_digits = _Pick([f"{i:02d}" for i in range(100)])
        self.three_digits = _Pick([f"{i:03d}" for i in range(1000)])

        self.lead_custom = self._custom_columns(target.lead_fields)
        self.contact_custom = self._custom_columns(target.contact_fields)

    def _custom_columns(self, fields: list[CustomFieldSpec]) -> list[tuple[str, _Pick]]:
        """Per field, a picker of its values (or _MISSING for about 40 % of the objects)."""
        rng, clock = self.rng, self.clock
        out = []
        for spec in fields:
            pool: list[Any]
            if spec.type in ("text", "hidden"):
                pool = CUSTOM_TEXTS
            elif spec.type == "number":
                pool = [rng.randint(1, 100_000) for _ in range(500)]
            elif spec.type == "date":
                pool = [day.strip() for day in clock.days[:SPAN_DAYS]]
            elif spec.type == "datetime":
                pool = [
                    t.replace(" ", "T") + "+00:00"
                    for t in clock.format(
                        rng, [clock.start + rng.randrange(clock.span) for _ in range(2000)]
                    )[0]
                ]
            elif spec.type == "choices":
                pool = [c for c in spec.choices if isinstance(c, str)]
            elif spec.type == "user":
                pool = list(self.target.member_user_ids)
            else:  # contact, custom_object: would need ids of other objects
                continue
            if not pool:
                continue
            if spec.accepts_multiple_values:
                pool = [rng.sample(pool, rng.randint(1, min(3, len(pool)))) for _ in range(256)]
            out.append((spec.id, _Pick([*pool, _MISSING], [1] * len(pool) + [len(pool) * 0.67])))
        return out

    def _custom(self, columns: list[tuple[str, _Pick]], n: int) -> list[str]:
        if not columns:
            return ["{}"] * n
        rng = self.rng
        ids = [field_id for field_id, _ in columns]
        values = [pick.draw(rng, n) for _, pick in columns]
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        texts = [
            dumps({k: v for k, v in zip(ids, row, strict=True) if v is not _MISSING})
            for row in zip(*values, strict=True)
        ]
        if self.escape:
            texts = [t.replace("\\", "\\\\") for t in texts]
        return texts

    def chunk(self, first: int, n: int) -> _Chunk:
        rng, null, clock, positions = self.rng, self.null, self.clock, self.positions
        org = self.target.organization_id
        o = repeat(org)

        # Leads.
        stamp = f"{(self.stamp_base + first) % 10**_STAMP_DIGITS:0{_STAMP_DIGITS}d}"
        lead_ids = batch_ids("lead", n, stamp)
        country = self.country.draw(rng, n)
        heads, tails = self.head.draw(rng, n), self.tail.draw(rng, n)
        suffixes = _draw_by(rng, self.suffix, country)
        H, T = COMPANY_HEADS, COMPANY_TAILS
        names = [H[h] + " " + T[t] + s for h, t, s in zip(heads, tails, suffixes, strict=True)]
        hs, ts = self.head_slugs, self.tail_slugs
        domains = [
            hs[h] + sep + ts[t] + tld
            for h, t, sep, tld in zip(
                heads,
                tails,
                self.domain_sep.draw(rng, n),
                _draw_by(rng, self.tld, country),
                strict=True,
            )
        ]
        urls = [
            p + d if p else null for p, d in zip(self.url_prefix.draw(rng, n), domains, strict=True)
        ]
        start, span, total = clock.start, clock.span, self.total
        step = span // total
        # Increasing with the lead's number (appends to the date indexes), jittered within a step.
        created = [
            start + (i * span) // total + int(r * step)
            for i, r in zip(range(first, first + n), [rng.random() for _ in range(n)], strict=True)
        ]
        now = clock.now
        updated = [
            t if (t := c + d) < now else now
            for c, d in zip(created, self.update_delta.draw(rng, n), strict=True)
        ]
        members = self.member.draw(rng, n)
        created_text, updated_text = clock.format(rng, created, updated)
        lead_rows = list(
            zip(
                lead_ids, repeat(org), names, self.description.draw(rng, n), urls,
                self.status.draw(rng, n), self._custom(self.lead_custom, n),
                members, self.member.draw(rng, n), created_text, updated_text,
            )
        )  # fmt: skip

        # Contacts.
        if self.contacts_per_lead is None:
            per_lead = self.contacts.draw(rng, n)
        else:
            per_lead = [self.contacts_per_lead] * n
        owner = list(chain.from_iterable(map(repeat, range(n), per_lead)))
        m = len(owner)
        contact_ids = batch_ids("cont", m, stamp)
        c_lead = list(map(lead_ids.__getitem__, owner))
        c_country = list(map(country.__getitem__, owner))
        fi, li = self.first.draw(rng, m), self.last.draw(rng, m)
        F, L = FIRST_NAMES, LAST_NAMES
        c_names = [F[a] + " " + L[b] for a, b in zip(fi, li, strict=True)]
        c_created = [
            t if (t := created[i] + d) < now else now
            for i, d in zip(owner, self.contact_delta.draw(rng, m), strict=True)
        ]
        c_updated = [
            t if (t := c + d) < now else now
            for c, d in zip(c_created, self.update_delta.draw(rng, m), strict=True)
        ]
        contact_members = list(map(members.__getitem__, owner))
        created_text, updated_text = clock.format(rng, c_created, c_updated)
        contact_rows = list(
            zip(
                contact_ids, repeat(org), c_lead, c_names, self.title.draw(rng, m),
                self._custom(self.contact_custom, m), contact_members, contact_members,
                created_text, updated_text,
            )
        )  # fmt: skip

        # Emails: a work address at the lead's domain, and for some a personal second one.
        LF, LS, LL = self.local_first, self.local_sep, self.local_last
        pattern = self.pattern.draw(rng, m)
        emails = [
            LF[p][a] + LS[p] + LL[p][b] + "@" + domains[i]
            for p, a, b, i in zip(pattern, fi, li, owner, strict=True)
        ]
        email_rows = list(
            zip(
                o, c_lead, contact_ids, repeat(positions[0]), self.email_type.draw(rng, m), emails,
                map(str.lower, emails),
            )
        )  # fmt: skip
        second = [i for i, k in enumerate(self.emails.draw(rng, m)) if k == 2]
        if second:
            k = len(second)
            pattern = self.pattern.draw(rng, k)
            mail = _draw_by(rng, self.freemail, [c_country[i] for i in second])
            emails = [
                LF[p][fi[i]] + LS[p] + LL[p][li[i]] + s + "@" + d
                for p, i, s, d in zip(
                    pattern, second, self.personal_suffix.draw(rng, k), mail, strict=True
                )
            ]
            email_rows.extend(
                zip(
                    o, [c_lead[i] for i in second], [contact_ids[i] for i in second],
                    repeat(positions[1]),
                    self.email2_type.draw(rng, k), emails, map(str.lower, emails),
                )
            )  # fmt: skip

        # Phones: 0-2 per contact, in the lead's country, E.164.
        phone_rows: list[tuple[Any, ...]] = []
        counts = self.phones.draw(rng, m)
        for position in (0, 1):
            chosen = [i for i, k in enumerate(counts) if k > position]
            k = len(chosen)
            where = [c_country[i] for i in chosen]
            offsets, text, mid = self.phone_offset, self.phone_text, self.phone_mid
            prefix = [
                offsets[c] + p
                for c, p in zip(where, _draw_by(rng, self.phone_prefix, where), strict=True)
            ]
            numbers = [
                text[p] + mid[p][u] + d
                for p, u, d in zip(prefix, _u16(rng, k), self.four_digits.draw(rng, k), strict=True)
            ]
            phone_rows.extend(
                zip(
                    o, [c_lead[i] for i in chosen], [contact_ids[i] for i in chosen],
                    repeat(positions[position]), map(self.phone_type.__getitem__, prefix), numbers,
                    map(self.phone_country.__getitem__, prefix),
                )
            )  # fmt: skip

        # URLs: a profile link for some contacts.
        chosen = [i for i, yes in enumerate(self.has_url.draw(rng, m)) if yes]
        fs, ls = self.first_slugs, self.last_slugs
        url_rows = list(
            zip(
                o, [c_lead[i] for i in chosen], [contact_ids[i] for i in chosen],
                repeat(positions[0]), repeat("url"),
                [
                    "https://www.linkedin.com/in/" + fs[fi[i]] + "-" + ls[li[i]] + "-" + d
                    for i, d in zip(chosen, self.four_digits.draw(rng, len(chosen)), strict=True)
                ],
            )
        )  # fmt: skip

        # Addresses: 0-1 per lead, in its country.
        address_rows: list[tuple[Any, ...]] = []
        has = self.has_address.draw(rng, n)
        for c in range(len(COUNTRIES)):
            chosen = [
                i for i, (yes, cc) in enumerate(zip(has, country, strict=True)) if yes and cc == c
            ]
            k = len(chosen)
            cities = [_CITIES[c][j] for j in self.city[c].draw(rng, k)]
            streets, kinds = self.street[c].draw(rng, k), self.street_kind[c].draw(rng, k)
            numbers = self.house_number.draw(rng, k)
            if c == 2:  # Goethestraße 12, 10115 Berlin
                line1 = [
                    s + kd + " " + nr for s, kd, nr in zip(streets, kinds, numbers, strict=True)
                ]
                zips = [
                    city[2] + d
                    for city, d in zip(cities, self.three_digits.draw(rng, k), strict=True)
                ]
            else:
                line1 = [
                    nr + " " + s + " " + kd
                    for s, kd, nr in zip(streets, kinds, numbers, strict=True)
                ]
                if c == 0:
                    zips = [
                        city[2] + d
                        for city, d in zip(cities, self.two_digits.draw(rng, k), strict=True)
                    ]
                else:
                    zips = [
                        city[2] + " " + d
                        for city, d in zip(cities, self.inward.draw(rng, k), strict=True)
                    ]
            address_rows.extend(
                zip(
                    o, [lead_ids[i] for i in chosen], repeat(positions[0]),
                    self.address_label.draw(rng, k),
                    line1, self.unit.draw(rng, k), [city[0] for city in cities],
                    [city[1] for city in cities], zips, repeat(COUNTRIES[c]),
                )
            )  # fmt: skip

        tables = [
            _Table("lead", _LEAD_COLUMNS, lead_rows),
            _Table("contact", _CONTACT_COLUMNS, contact_rows),
            _Table("contact_email", _EMAIL_COLUMNS, email_rows),
            _Table("contact_phone", _PHONE_COLUMNS, phone_rows),
            _Table("contact_url", _URL_COLUMNS, url_rows),
            _Table("lead_address", _ADDRESS_COLUMNS, address_rows),
        ]
        for t in tables:
            t.count = len(t.rows)
        return _Chunk(leads=n, tables={t.name: t for t in tables})


# --- writing --------------------------------------------------------------------------------


def _copy_text(rows: list[tuple[Any, ...]]) -> bytes:
    """COPY text format. Generated values are strings (`\\N` for NULL) holding no tab, newline
    or backslash; custom JSON, the one value that might, is escaped when generated."""
    return ("\n".join(map("\t".join, rows)) + "\n").encode()


def _may_skip_foreign_key_checks(conn: Any) -> bool:
    """Whether to turn off PostgreSQL's per-row foreign-key triggers (over half of the work).

    Every row written references the organization, statuses and members looked up before, or
    leads and contacts committed earlier in the pipeline, so the checks cannot fail (unless
    someone deletes the organization or a status meanwhile). Turning them off takes
    `session_replication_role = replica`, which only a superuser may set and which also silences
    ordinary triggers: done only if the seeded tables have none.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('is_superuser')")
        row = cur.fetchone()
        if row and row[0] == "on":
            cur.execute(
                "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"
                " AND tgrelid = ANY(%s::regclass[])",
                (list(_COUNTED),),
            )
            row = cur.fetchone()
            skip = bool(row) and row[0] == 0
        else:
            skip = False
    conn.rollback()
    return skip


def _driver_connection(raw: Any) -> Any:
    conn = raw.driver_connection
    assert conn is not None
    return conn


class _PostgresSink:
    def __init__(self, engine: Engine, skip_foreign_key_checks: bool) -> None:
        self.raw = engine.raw_connection()
        self.conn: Any = _driver_connection(self.raw)
        self.skip_foreign_key_checks = skip_foreign_key_checks
        self.conn.execute("SET application_name = 'clove seed'")  # in pg_stat_activity
        self.conn.commit()

    def write(self, tables: list[_Table]) -> None:
        try:
            with self.conn.cursor() as cur:
                # This transaction only; a crash could lose the last chunks, never corrupt them.
                cur.execute("SET LOCAL synchronous_commit = off")
                if self.skip_foreign_key_checks:
                    cur.execute("SET LOCAL session_replication_role = replica")
                for t in tables:
                    if t.copy_text:
                        with cur.copy(f"COPY {t.name} ({', '.join(t.columns)}) FROM STDIN") as cp:
                            cp.write(t.copy_text)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken connection is closed all the same
            self.conn.rollback()
            self.conn.execute("RESET application_name")
            self.conn.commit()
        self.raw.close()


class _SqliteSink:
    def __init__(self, engine: Engine) -> None:
        self.raw = engine.raw_connection()
        self.conn: Any = _driver_connection(self.raw)
        # Index inserts land all over the file: a page cache of 256 MB instead of 2 MB keeps
        # them from re-reading pages (restored when done; the connection goes back to the pool).
        self.cache_size = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        self.conn.execute("PRAGMA cache_size = -262144")

    def write(self, tables: list[_Table]) -> None:
        cur = self.conn.cursor()
        cur.execute("BEGIN")
        try:
            for t in tables:
                if t.rows:
                    marks = ", ".join("?" * len(t.columns))
                    cur.executemany(
                        f"INSERT INTO {t.name} ({', '.join(t.columns)}) VALUES ({marks})", t.rows
                    )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.execute(f"PRAGMA cache_size = {int(self.cache_size)}")
        self.raw.close()


# PostgreSQL writes each chunk on three connections, each in a transaction of its own: leads
# and contacts first; once they are committed, emails and phones in parallel, while the first
# connection goes on with the next chunk. SQLite has one writer at a time.
_PG_FIRST = ("lead", "lead_address", "contact", "contact_url")
_PG_THEN = (("contact_email",), ("contact_phone",))
_ALL_TABLES = _PG_FIRST + tuple(chain.from_iterable(_PG_THEN))


class _Stage(threading.Thread):
    """Writes its tables of each chunk, then hands the chunk on to the stages after it (or, the
    last to finish it, reports it written)."""

    def __init__(
        self,
        sink: _PostgresSink | _SqliteSink,
        tables: tuple[str, ...],
        after: list[_Stage],
        on_written: Callable[[_Chunk], None],
        failures: list[BaseException],
    ) -> None:
        super().__init__(name=f"clove-seed-{tables[0]}", daemon=True)
        self.sink, self.tables, self.after = sink, tables, after
        self.on_written, self.failures = on_written, failures
        self.inbox: queue.Queue[_Chunk | None] = queue.Queue(maxsize=1)

    def run(self) -> None:
        failed = False
        try:
            while (chunk := self.inbox.get()) is not None:
                # After a failure here, drain. A failure elsewhere stops the generator, but what
                # reaches this stage was committed before it: complete that.
                if failed:
                    continue
                try:
                    tables = [chunk.tables[name] for name in self.tables]
                    self.sink.write(tables)
                except BaseException as exc:
                    self.failures.append(exc)
                    failed = True
                    continue
                for t in tables:
                    t.copy_text, t.rows = b"", []  # written: free the memory now
                if self.after:
                    for stage in self.after:
                        stage.inbox.put(chunk)
                else:
                    self.on_written(chunk)
        finally:
            for stage in self.after:
                stage.inbox.put(None)
            self.sink.close()


@dataclass
class SeedStats:
    organization_id: str
    leads: int = 0
    contacts: int = 0
    emails: int = 0
    phones: int = 0
    urls: int = 0
    addresses: int = 0
    seconds: float = 0.0
    foreign_key_checks: bool = True

    @property
    def rows(self) -> int:
        return self.leads + self.contacts + self.emails + self.phones + self.urls + self.addresses

    def as_dict(self) -> dict[str, Any]:
        return {
            "leads": self.leads,
            "contacts": self.contacts,
            "emails": self.emails,
            "phones": self.phones,
            "urls": self.urls,
            "addresses": self.addresses,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "foreign_key_checks": self.foreign_key_checks,
        }

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"Seeded {self.leads:,} leads, {self.contacts:,} contacts, {self.emails:,} emails, "
            f"{self.phones:,} phones, {self.urls:,} urls, {self.addresses:,} addresses "
            f"into {self.organization_id} in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )


_COUNTED = {
    "lead": "leads",
    "contact": "contacts",
    "contact_email": "emails",
    "contact_phone": "phones",
    "contact_url": "urls",
    "lead_address": "addresses",
}


def seed_organization(
    engine: Engine,
    target: SeedTarget,
    leads: int,
    *,
    contacts_per_lead: int | None = None,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> SeedStats:
    """Writes `leads` leads with their contacts etc. into `target`, then one summary event.

    Chunks are committed one by one; if writing fails, the chunks before stay.
    """
    started = time.perf_counter()
    sqlite = is_sqlite(engine.url.render_as_string(hide_password=False))
    generator = _Generator(
        target, leads, contacts_per_lead, seed, None if sqlite else "\\N", utcnow()
    )
    stats = SeedStats(target.organization_id)
    failures: list[BaseException] = []
    written = 0
    lock = threading.Lock()
    unfinished: dict[int, int] = {}  # chunk -> last stages still writing it

    def on_written(chunk: _Chunk) -> None:
        nonlocal written
        with lock:
            unfinished[id(chunk)] -= 1
            if unfinished[id(chunk)]:
                return
            del unfinished[id(chunk)]
            written += chunk.leads
            done = written
        if on_progress is not None:
            on_progress(done)

    if sqlite:
        last = [_Stage(_SqliteSink(engine), _ALL_TABLES, [], on_written, failures)]
        stages = last
    else:
        with engine.connect() as conn:
            skip = _may_skip_foreign_key_checks(conn.connection.driver_connection)
        stats.foreign_key_checks = not skip
        last = [
            _Stage(_PostgresSink(engine, skip), tables, [], on_written, failures)
            for tables in _PG_THEN
        ]
        first_stage = _Stage(_PostgresSink(engine, skip), _PG_FIRST, last, on_written, failures)
        stages = [first_stage, *last]
    for stage in stages:
        stage.start()
    # Chunks in memory: one being generated, and per stage one waiting and one being written.
    try:
        for first in range(0, leads, chunk_size):
            if failures:
                break
            chunk = generator.chunk(first, min(chunk_size, leads - first))
            for t in chunk.tables.values():
                attr = _COUNTED[t.name]
                setattr(stats, attr, getattr(stats, attr) + t.count)
                if not sqlite:
                    t.copy_text = _copy_text(t.rows) if t.rows else b""
                    t.rows = []
            with lock:
                unfinished[id(chunk)] = len(last)
            stages[0].inbox.put(chunk)
    finally:
        stages[0].inbox.put(None)
        for stage in stages:
            stage.join()
    if failures:
        raise failures[0]
    # Fresh statistics, so that the next queries (a bulk action over what was just seeded)
    # pick indexes: SQLite keeps none until ANALYZE, and PostgreSQL's autovacuum only gets to
    # a big load after a while, planning meanwhile as if the tables were nearly empty.
    with engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql(f"ANALYZE {', '.join(_ALL_TABLES)}")
    stats.seconds = time.perf_counter() - started

    with Session(engine) as session, session.begin():
        record_event(
            session,
            Actor(target.admin),
            object_type="import",
            action="completed",
            object_id=None,
            lead_id=None,
            data={"source": "clove seed", "seed": seed, **stats.as_dict()},
            meta={"command": "clove seed"},
        )
    return stats
