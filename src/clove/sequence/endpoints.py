"""`/sequence/` and `/sequence_subscription/`: sequences, their steps, and subscriptions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.sequence import service
from clove.sequence.schemas import (
    SequenceCreate,
    SequenceUpdate,
    SubscriptionCreate,
    SubscriptionUpdate,
    serialize_sequence,
    serialize_subscription,
)

router = APIRouter(route_class=TransactionRoute)

SUBSCRIPTION_FILTERS = ("sequence_id", "contact_id", "lead_id")


# --- Sequences -----------------------------------------------------------------------------------


@router.get("/sequence/")
def list_sequences(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    sequences = service.list_sequences(db, actor.organization_id, skip, limit)
    return respond(page(sequences, limit), request)


@router.post("/sequence/")
def create_sequence(
    body: SequenceCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    sequence = service.create_sequence(db, actor, body)
    steps = service.steps_of(db, [sequence.id]).get(sequence.id, [])
    return respond(serialize_sequence(sequence, steps), request)


@router.get("/sequence/{sequence_id}/")
def get_sequence(
    sequence_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    sequence = service.get_sequence(db, actor.organization_id, sequence_id)
    return respond(service.sequence_detail(db, sequence), request)


@router.put("/sequence/{sequence_id}/")
def update_sequence(
    sequence_id: str,
    body: SequenceUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    sequence = service.get_sequence(db, actor.organization_id, sequence_id)
    service.update_sequence(db, actor, sequence, body)
    return respond(service.sequence_detail(db, sequence), request)


@router.delete("/sequence/{sequence_id}/")
def delete_sequence(
    sequence_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    sequence = service.get_sequence(db, actor.organization_id, sequence_id)
    service.delete_sequence(db, actor, sequence)
    return respond({})


# --- Subscriptions -------------------------------------------------------------------------------


@router.get("/sequence_subscription/")
def list_subscriptions(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    """At least one of `sequence_id`, `contact_id`, `lead_id` (all given must match)."""
    skip, limit = page_params(request)
    params = request.query_params
    filters = {name: params[name] for name in SUBSCRIPTION_FILTERS if params.get(name)}
    subs = service.list_subscriptions(db, actor.organization_id, filters, skip, limit)
    return respond(page(map(serialize_subscription, subs), limit), request)


@router.post("/sequence_subscription/")
def create_subscription(
    body: SubscriptionCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    sub = service.create_subscription(db, actor, body)
    return respond(serialize_subscription(sub), request, status_code=201)


@router.get("/sequence_subscription/{subscription_id}/")
def get_subscription(
    subscription_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    sub = service.get_subscription(db, actor.organization_id, subscription_id)
    return respond(serialize_subscription(sub), request)


@router.put("/sequence_subscription/{subscription_id}/")
def update_subscription(
    subscription_id: str,
    body: SubscriptionUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    sub = service.get_subscription(db, actor.organization_id, subscription_id)
    service.update_subscription(db, actor, sub, body)
    return respond(serialize_subscription(sub), request)


@router.delete("/sequence_subscription/{subscription_id}/")
def delete_subscription(
    subscription_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    sub = service.get_subscription(db, actor.organization_id, subscription_id)
    service.delete_subscription(db, actor, sub)
    return respond({})
