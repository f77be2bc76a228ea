"""The people and the process every test works with, built through the production code.

One organization ("Acme") with a purchase-request pipe and a person per role:
owner (organization owner), admin, member, reviewer, requester, viewer and an outsider
who belongs to another organization.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model

from pipes.choices import FieldType, OrgRole, PipeRole
from pipes.models import Field, Label, Membership, Organization, Phase, Pipe
from pipes.roles import pipe_role_grant

PASSWORD = "correct-horse-battery"


def make_user(username: str, **extra):
    User = get_user_model()
    user = User.objects.create_user(
        username=username,
        password=PASSWORD,
        email=f"{username}@example.com",
        first_name=extra.pop("first_name", username.title()),
        **extra,
    )
    return user


def build_purchase_pipe(org: Organization, *, slug: str = "purchases", code: str = "PR") -> Pipe:
    """A small purchase-request process exercising conditions, required fields and transitions."""
    pipe = Pipe.objects.create(
        organization=org,
        name="Purchase requests",
        slug=slug,
        code=code,
        title_field="item",
        key_fields=["amount", "category"],
        expiration_days=30,
    )
    triage = Phase.objects.create(
        pipe=pipe, name="Triage", key="triage", position=1, sla_hours=24, requester_status="Received"
    )
    approval = Phase.objects.create(
        pipe=pipe, name="Approval", key="approval", position=2, sla_hours=48, requester_status="In review"
    )
    done = Phase.objects.create(
        pipe=pipe, name="Purchased", key="done", position=3, is_final=True, requester_status="Done"
    )
    rejected = Phase.objects.create(
        pipe=pipe, name="Rejected", key="rejected", position=4, is_final=True, requester_status="Declined"
    )
    triage.allowed_next.set([approval, rejected])
    approval.allowed_next.set([done, rejected, triage])
    fields = [
        dict(key="item", label="Item", type=FieldType.SHORT_TEXT, required=True, position=1),
        dict(
            key="amount",
            label="Amount",
            type=FieldType.CURRENCY,
            required=True,
            position=2,
            validation={"min": 0},
        ),
        dict(
            key="requester_email",
            label="Your email",
            type=FieldType.EMAIL,
            required=True,
            position=3,
            pii=True,
        ),
        dict(key="urgent", label="Urgent", type=FieldType.CHECKBOX, position=4),
        dict(
            key="urgency_reason",
            label="Why is it urgent?",
            type=FieldType.LONG_TEXT,
            required=True,
            position=5,
            condition={"field": "urgent", "op": "true"},
        ),
        dict(key="quote", label="Quote", type=FieldType.ATTACHMENT, position=6, config={"multiple": True}),
        dict(
            key="category",
            label="Category",
            type=FieldType.SELECT,
            required=True,
            position=1,
            phase=triage,
            options=["Hardware", "Software", "Services"],
        ),
        dict(
            key="cost_center",
            label="Cost center",
            type=FieldType.SHORT_TEXT,
            position=2,
            phase=triage,
            validation={"regex": r"^CC-\d{3}$", "regex_message": "Use the form CC-123."},
        ),
        dict(key="approved_by", label="Approver", type=FieldType.ASSIGNEE, position=1, phase=approval),
        dict(
            key="po_number",
            label="PO number",
            type=FieldType.SHORT_TEXT,
            required=True,
            position=2,
            phase=approval,
        ),
    ]
    for spec in fields:
        Field.objects.create(pipe=pipe, **spec)
    Label.objects.create(pipe=pipe, name="Priority", color="#c4302b")
    return pipe


@dataclass
class World:
    org: Organization
    pipe: Pipe
    owner: object
    admin: object
    member: object
    reviewer: object
    requester: object
    viewer: object
    outsider: object

    def phase(self, key: str) -> Phase:
        return self.pipe.phases.get(key=key)


def build_world() -> World:
    org = Organization.objects.create(name="Acme", slug="acme", time_zone="America/Sao_Paulo", currency="BRL")
    other = Organization.objects.create(name="Other Co", slug="other", currency="USD")
    pipe = build_purchase_pipe(org)
    people = {
        name: make_user(name)
        for name in ("owner", "admin", "member", "reviewer", "requester", "viewer", "outsider")
    }
    Membership.objects.create(organization=org, user=people["owner"], role=OrgRole.OWNER)
    for name, role in (
        ("admin", PipeRole.ADMIN),
        ("member", PipeRole.MEMBER),
        ("reviewer", PipeRole.REVIEWER),
        ("requester", PipeRole.REQUESTER),
        ("viewer", PipeRole.VIEWER),
    ):
        pipe_role_grant(pipe=pipe, user=people[name], role=role)
    Membership.objects.create(organization=other, user=people["outsider"], role=OrgRole.OWNER)
    return World(org=org, pipe=pipe, **people)


def good_start_values(**overrides) -> dict:
    values = {"item": "Laptop for Ana", "amount": "4500.00", "requester_email": "ana@example.com"}
    values.update(overrides)
    return values
