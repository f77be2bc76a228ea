"""The demo: Acme Ltda, a person per role, the four process templates and a few hundred cards.

Cards are created, filled, assigned, labelled, commented and moved only through
pipes.services, so every one has a real, verifiable timeline. They are written on a
simulated clock: each card starts some days or weeks ago and spends a believable time in
each phase (some longer than the phase's SLA), so the boards show fresh work, old work,
late work and finished work, as a real company's would. Everything is drawn from
random.Random(seed): the same seed gives the same companies, amounts and journeys.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import unicodedata
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission

from pipes.choices import OrgRole, PipeRole
from pipes.design import SYSTEM, design_grant, design_import, process_template_load
from pipes.models import Card, CardFile, Label, Membership, Organization, Phase, Pipe
from pipes.services import (
    Actor,
    CardTransitionError,
    card_assign,
    card_attach_files,
    card_comment,
    card_create,
    card_move,
    card_set_due,
    card_set_labels,
    card_update_fields,
)

from .demo_pdf import demo_pdf

DEMO_PASSWORD = "trilho-demo"
ORG_NAME = "Acme Ltda"
ORG_SLUG = "acme"
TIME_ZONE = "America/Sao_Paulo"
DEFAULT_CARDS = 250

# Share of the cards each template gets; accounts payable is the busiest desk.
TEMPLATE_SHARES = {
    "accounts_payable": 0.4,
    "supplier_onboarding": 0.2,
    "credit_analysis": 0.2,
    "employee_onboarding": 0.2,
}


@dataclass(frozen=True)
class DemoUser:
    """A demo person and what they may do."""

    username: str
    first_name: str
    last_name: str
    role: str  # "owner" (of the organization) or a pipe role
    does: str


DEMO_USERS = [
    DemoUser("owner", "Otávio", "Mendes", "owner", "owns Acme Ltda: every pipe, and the designer at /admin/"),
    DemoUser("ana.admin", "Ana", "Lima", PipeRole.ADMIN, "designs the four pipes and manages who takes part"),
    DemoUser("marcos", "Marcos", "Pereira", PipeRole.MEMBER, "works the cards on the boards"),
    DemoUser("rita", "Rita", "Carvalho", PipeRole.REVIEWER, "decides reviews in her inbox"),
    DemoUser("renato", "Renato", "Alves", PipeRole.REQUESTER, "files requests in the portal"),
    DemoUser("vera", "Vera", "Costa", PipeRole.VIEWER, "follows the boards, read-only"),
]


class DemoExists(Exception):
    """The demo organization or one of its people is already there."""


@dataclass
class DemoSummary:
    """What seeding created."""

    organization: Organization
    pipes: list[Pipe]
    cards: int
    events: int
    seconds: float
    by_phase: dict[str, Counter] = field(default_factory=dict)


def demo_exists() -> bool:
    User = get_user_model()
    return (
        Organization.objects.filter(slug=ORG_SLUG).exists()
        or User.objects.filter(username__in=[u.username for u in DEMO_USERS]).exists()
    )


@transaction.atomic
def demo_reset() -> None:
    """Remove the demo organization (pipes, cards, files) and the demo people."""
    org = Organization.objects.filter(slug=ORG_SLUG).first()
    if org is not None:
        pipe_ids = [str(pk) for pk in org.pipes.values_list("pk", flat=True)]
        files = [cf.file.name for cf in CardFile.objects.filter(card__pipe__organization=org)]
        # Cards protect their phases, and what other apps hang on phases (the rail's steps) may
        # protect what hangs on the pipe (its agents): remove cards, then phases, then the rest.
        Card.objects.filter(pipe__organization=org).delete()
        Phase.objects.filter(pipe__organization=org).delete()
        org.delete()
        pipe_type = ContentType.objects.get_for_model(Pipe)
        # Object permissions point at pipes by text id, without a foreign key: remove them too.
        UserObjectPermission.objects.filter(content_type=pipe_type, object_pk__in=pipe_ids).delete()
        GroupObjectPermission.objects.filter(content_type=pipe_type, object_pk__in=pipe_ids).delete()
        transaction.on_commit(lambda: _delete_files(files))
    get_user_model().objects.filter(username__in=[u.username for u in DEMO_USERS]).delete()


def _delete_files(names: list[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        default_storage.delete(name)


# ---------------------------------------------------------------- the simulated clock


@contextmanager
def simulated_clock() -> Iterator[_Clock]:
    """Lets the seed write history: while active, django.utils.timezone.now() returns clock.moment.

    pipes.services and pipes.timeline read the time through timezone.now(), so events,
    phase entries and card dates carry the simulated moments and the hash chain covers them."""
    clock = _Clock()
    real_now = timezone.now
    clock.real_now = real_now
    timezone.now = clock.now
    try:
        yield clock
    finally:
        timezone.now = real_now


class _Clock:
    def __init__(self) -> None:
        self.moment: dt.datetime | None = None
        self.real_now: Callable[[], dt.datetime] = timezone.now

    def now(self) -> dt.datetime:
        return self.moment if self.moment is not None else self.real_now()

    def at(self, moment: dt.datetime) -> None:
        # Always UTC, as timezone.now() gives: the timeline hashes the time's ISO text.
        self.moment = moment.astimezone(dt.UTC)


# ---------------------------------------------------------------- realistic Brazilian data

COMPANY_KINDS = [
    "Transportadora",
    "Metalúrgica",
    "Distribuidora",
    "Indústria de Embalagens",
    "Comercial",
    "Agropecuária",
    "Construtora",
    "Tecnologia",
    "Logística",
    "Papelaria",
    "Alimentos",
    "Consultoria",
    "Química",
    "Têxtil",
    "Serviços de Limpeza",
]
COMPANY_NAMES = [
    "Santa Clara",
    "Boa Vista",
    "Horizonte",
    "Paulista",
    "Ipiranga",
    "Serra Azul",
    "Rio Branco",
    "Três Irmãos",
    "Nova Era",
    "Vale Verde",
    "Cristal",
    "Bandeirantes",
    "Aurora",
    "Atlântico",
    "Pampa",
    "Cerrado",
    "Guanabara",
    "Itapuã",
    "Jacarandá",
    "Mantiqueira",
    "Tietê",
    "Araucária",
    "Sol Nascente",
    "Imperial",
]
COMPANY_SUFFIXES = ["Ltda", "Ltda", "Ltda", "S.A.", "Eireli", "ME"]
FIRST_NAMES = [
    "Ana",
    "Bruno",
    "Camila",
    "Diego",
    "Eduarda",
    "Felipe",
    "Gabriela",
    "Henrique",
    "Isabela",
    "João",
    "Larissa",
    "Lucas",
    "Mariana",
    "Matheus",
    "Natália",
    "Pedro",
    "Rafaela",
    "Rodrigo",
    "Sofia",
    "Thiago",
    "Vitória",
    "Yasmin",
    "Carlos",
    "Fernanda",
    "Gustavo",
    "Juliana",
]
LAST_NAMES = [
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Araújo",
    "Melo",
    "Barbosa",
    "Cardoso",
    "Rocha",
    "Teixeira",
    "Nascimento",
    "Moreira",
]
CITIES = [
    "São Paulo",
    "Campinas",
    "Santos",
    "Sorocaba",
    "Curitiba",
    "Belo Horizonte",
    "Rio de Janeiro",
    "Joinville",
]


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _check_digit(digits: list[int], weights: list[int]) -> int:
    rest = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
    return 0 if rest < 2 else 11 - rest


def cnpj(rng: random.Random) -> str:
    """A CNPJ with valid check digits, formatted 12.345.678/0001-90."""
    base = [rng.randint(0, 9) for _ in range(8)] + [0, 0, 0, 1]
    base.append(_check_digit(base, [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]))
    base.append(_check_digit(base, [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]))
    d = "".join(map(str, base))
    return f"{d[:2]}.{d[2:5]}.{d[5:8]}/{d[8:12]}-{d[12:]}"


def cpf(rng: random.Random) -> str:
    """A CPF with valid check digits, formatted 123.456.789-09."""
    base = [rng.randint(0, 9) for _ in range(9)]
    base.append(_check_digit(base, list(range(10, 1, -1))))
    base.append(_check_digit(base, list(range(11, 1, -1))))
    d = "".join(map(str, base))
    return f"{d[:3]}.{d[3:6]}.{d[6:9]}-{d[9:]}"


def mobile(rng: random.Random) -> str:
    area = rng.choice(["11", "19", "21", "31", "41", "47", "13", "15"])
    return f"+55 {area} 9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"


@dataclass(frozen=True)
class Company:
    name: str
    short: str  # the trade name
    cnpj: str
    domain: str
    city: str
    contact: str

    @property
    def contact_email(self) -> str:
        first, *_rest, last = self.contact.split()
        return f"{_ascii(first).lower()}.{_ascii(last).lower()}@{self.domain}"


def company(rng: random.Random) -> Company:
    kind, name = rng.choice(COMPANY_KINDS), rng.choice(COMPANY_NAMES)
    # Reserved example domains: a demo must never email a real company.
    domain = _ascii(name).lower().replace(" ", "") + ".example"
    return Company(
        name=f"{kind} {name} {rng.choice(COMPANY_SUFFIXES)}",
        short=name,
        cnpj=cnpj(rng),
        domain=domain,
        city=rng.choice(CITIES),
        contact=person_name(rng),
    )


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} {rng.choice(LAST_NAMES)}"


def money(value: float | Decimal) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


def brl(value: str) -> str:
    """R$ 12.450,00, as printed on Brazilian documents."""
    whole, cents = value.split(".")
    return f"R$ {int(whole):,}".replace(",", ".") + f",{cents}"


def pdf_upload(name: str, title: str, lines: list[str]) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, demo_pdf(title, lines), content_type="application/pdf")


# ---------------------------------------------------------------- the seeding context


@dataclass
class _Seed:
    """What card plans need: the pipe, its people and options, the clock and the random source."""

    rng: random.Random
    clock: _Clock
    pipe: Pipe
    phases: dict[str, Phase]
    options: dict[str, list[str]]
    labels: list[Label]
    users: dict[str, Any]
    companies: list[Company]

    def actor(self, username: str) -> Actor:
        return Actor.for_user(self.users[username])

    def worker(self) -> str:
        return self.rng.choices(["marcos", "ana.admin"], weights=[3, 1])[0]

    def pick(self, key: str) -> str:
        return self.rng.choice(self.options[key])

    def local_date(self, moment: dt.datetime | None = None) -> dt.date:
        return (moment or self.clock.now()).astimezone(zoneinfo.ZoneInfo(TIME_ZONE)).date()


class CardPlan:
    """How cards of one template start and what people fill in before each move."""

    template: str
    # (weight, phase keys from the first phase on) — a card walks as far as its time allows.
    paths: list[tuple[int, list[str]]]

    def start(self, s: _Seed) -> tuple[dict, dict, Actor, str]:
        """Start-form values, uploads, the actor filing it and the requester's email."""
        raise NotImplementedError

    def path(self, s: _Seed, values: dict) -> list[str]:
        weights, paths = zip(*self.paths, strict=True)
        return s.rng.choices(paths, weights=weights)[0]

    def fill(self, s: _Seed, card: Card, phase: str, nxt: str | None) -> tuple[dict, dict]:
        """Field values and uploads (by attachment field) to set in `phase` before moving to `nxt`
        (None: the card stays, partly worked)."""
        return {}, {}

    def comment(self, s: _Seed, phase: str, nxt: str | None) -> str | None:
        return None

    def not_before(self, s: _Seed, card: Card, phase: str) -> dt.datetime | None:
        """The earliest a card may leave `phase` (e.g. not before the new hire's first day)."""
        return None


JUSTIFICATIONS = [
    "Annual maintenance contract of the production line, approved in this year's budget.",
    "Freight for the quarterly restock of the Campinas distribution center.",
    "Renewal of the ERP licences for the whole company (120 users), as negotiated by IT.",
    "Packaging material for the Black Friday campaign, ordered ahead to secure the price.",
    "Emergency repair of the cold room compressor; the quote was the lowest of three.",
    "Consulting project for the tax reform transition, phase 2 of 3, per the signed SOW.",
]


class AccountsPayable(CardPlan):
    template = "accounts_payable"
    paths = [
        (80, ["received", "approval", "scheduled", "paid"]),
        (5, ["received", "rejected"]),
        (7, ["received", "approval", "rejected"]),
        (8, ["received", "approval", "received", "approval", "scheduled", "paid"]),
    ]

    def start(self, s):
        rng = s.rng
        supplier = rng.choice(s.companies)
        today = s.local_date()
        amount = money(min(max(rng.lognormvariate(8.3, 1.05), 180), 240000))
        number = str(rng.randint(1200, 989999))
        values = {
            "supplier_name": supplier.name,
            "supplier_cnpj": supplier.cnpj,
            "invoice_number": number,
            "issue_date": (today - dt.timedelta(days=rng.randint(0, 12))).isoformat(),
            "payment_due": (today + dt.timedelta(days=rng.randint(6, 45))).isoformat(),
            "amount": amount,
            "cost_center": s.pick("cost_center"),
            "expense_type": s.pick("expense_type"),
        }
        if rng.random() < 0.7:
            values["po_number"] = f"PO-{rng.randint(10000, 99999)}"
        if rng.random() < 0.6:
            values["supplier_contact_email"] = supplier.contact_email
        if Decimal(amount) > 10000:
            values["justification"] = rng.choice(JUSTIFICATIONS)
        if rng.random() < 0.15:
            values["notes"] = rng.choice(
                [
                    "Boleto attached to the invoice.",
                    "Supplier asked for PIX payment.",
                    "Partial delivery; see PO.",
                ]
            )
        invoice = pdf_upload(
            f"NFe-{number}.pdf",
            f"DANFE - NF-e {number}",
            [
                f"Emitente: {supplier.name}",
                f"CNPJ: {supplier.cnpj}",
                f"{supplier.city} - SP",
                "Destinatário: Acme Ltda",
                f"Data de emissão: {values['issue_date']}",
                f"Vencimento: {values['payment_due']}",
                f"Natureza: {values['expense_type']}",
                f"Valor total da nota: {brl(amount)}",
            ],
        )
        filer = rng.choices(["renato", "marcos"], weights=[3, 1])[0]
        return values, {"invoice_file": [invoice]}, s.actor(filer), ""

    def fill(self, s, card, phase, nxt):
        rng, v = s.rng, card.values
        if phase == "received" and nxt:
            if nxt == "rejected":
                return {
                    "match_result": "Mismatch",
                    "mismatch_details": rng.choice(
                        [
                            "Invoice amount is higher than the purchase order.",
                            "Goods were not received yet at the warehouse.",
                            "Duplicate of an invoice already paid last month.",
                        ]
                    ),
                }, {}
            return {
                "match_result": "Matches PO and receipt" if v.get("po_number") else "No PO (service invoice)"
            }, {}
        if phase == "approval":
            values = {"approver": [s.users["ana.admin"].pk]}
            if nxt == "scheduled":
                values["decision"] = "Approved"
            elif nxt == "rejected":
                values["decision"] = "Rejected"
                values["rejection_reason"] = rng.choice(
                    [
                        "Not in this quarter's budget.",
                        "Service not delivered as agreed.",
                        "Price above the contract.",
                    ]
                )
            return values, {}
        if phase == "scheduled":
            method = rng.choices(["Boleto", "PIX", "TED"], weights=[5, 3, 2])[0]
            values = {"payment_method": method}
            if nxt == "paid":
                values["payment_date"] = s.local_date().isoformat()
                if method == "PIX":
                    values["pix_key"] = v["supplier_cnpj"]
                if rng.random() < 0.1:
                    values["discount"] = rng.choice(["1.5", "2", "3"])
            return values, {}
        return {}, {}

    def comment(self, s, phase, nxt):
        if nxt == "received" and phase == "approval":
            return "Returning to the invoice check: the quantity billed differs from the receipt."
        if phase == "approval" and nxt == "scheduled" and s.rng.random() < 0.3:
            return "Approved. Please pay on the due date, not before."
        return None


class SupplierOnboarding(CardPlan):
    template = "supplier_onboarding"
    paths = [
        (55, ["triage", "compliance", "contracting", "active"]),
        (15, ["triage", "rejected"]),
        (20, ["triage", "compliance", "rejected"]),
        (10, ["triage", "compliance", "triage", "compliance", "contracting", "active"]),
    ]
    descriptions = {
        "Raw materials": "Steel coils and aluminium profiles cut to size, delivered weekly.",
        "Packaging": "Corrugated boxes, stretch film and custom printed labels.",
        "Logistics and freight": "Road freight across the South-East, full and partial loads.",
        "IT services": "Managed support for laptops and networks, with on-site technicians.",
        "Professional services": "Tax and accounting consulting for mid-sized companies.",
        "Facilities and maintenance": "Cleaning, gardening and preventive maintenance of buildings.",
        "Marketing": "Event production and promotional material for trade shows.",
    }

    def start(self, s):
        rng = s.rng
        supplier = company(rng)
        category = s.pick("category")
        values = {
            "company_name": supplier.name,
            "cnpj": supplier.cnpj,
            "category": category,
            "services_description": self.descriptions[category],
            "contact_name": supplier.contact,
            "contact_email": supplier.contact_email,
            "terms_accepted": True,
        }
        if rng.random() < 0.5:
            values["trade_name"] = supplier.short
        if rng.random() < 0.8:
            values["contact_phone"] = mobile(rng)
        if rng.random() < 0.85:
            values["annual_volume"] = money(rng.choice([24000, 60000, 120000, 250000, 480000, 900000]))
        if rng.random() < 0.25:
            values["handles_personal_data"] = True
            values["dpo_email"] = f"dpo@{supplier.domain}"
        docs = [
            pdf_upload(
                "cartao-cnpj.pdf",
                "Comprovante de Inscrição e de Situação Cadastral",
                [f"Nome empresarial: {supplier.name}", f"CNPJ: {supplier.cnpj}", "Situação cadastral: ATIVA"],
            )
        ]
        if rng.random() < 0.7:
            docs.append(
                pdf_upload(
                    "contrato-social.pdf",
                    "Contrato Social",
                    [f"{supplier.name}", f"Sede: {supplier.city}", "Capital social: R$ 500.000,00"],
                )
            )
        # Suppliers have no account: the public form files the card as the system.
        return values, {"company_documents": docs}, Actor.system("Public form"), supplier.contact_email

    def fill(self, s, card, phase, nxt):
        rng = s.rng
        if phase == "triage":
            values = {"requesting_department": s.pick("requesting_department")}
            if nxt:
                values["buyer"] = [s.users["marcos"].pk]
            return values, {}
        if phase == "compliance":
            if nxt == "contracting":
                decision = rng.choices(["Approved", "Approved with conditions"], weights=[3, 1])[0]
                values = {
                    "risk_rating": rng.choices(["Low", "Medium"], weights=[3, 1])[0],
                    "compliance_decision": decision,
                    "compliance_checks": s.options["compliance_checks"],
                }
                if decision == "Approved with conditions":
                    values["approval_conditions"] = (
                        "Send the renewed tax clearance certificate within 30 days."
                    )
                return values, {}
            if nxt == "rejected":
                return {
                    "risk_rating": "High",
                    "compliance_decision": "Rejected",
                    "rejection_reason": rng.choice(
                        [
                            "CNPJ is suspended at Receita Federal.",
                            "Found on the state debarment list (CEIS).",
                            "Bank account belongs to a third party.",
                        ]
                    ),
                }, {}
            if nxt is None:
                return {"risk_rating": s.pick("risk_rating")}, {}
            return {}, {}
        if phase == "contracting":
            values = {"payment_terms": rng.choice(["28 days", "30 days", "30 days", "45 days"])}
            if nxt == "active":
                values["erp_vendor_code"] = f"V{rng.randint(1000, 99999):06d}"
                contract = pdf_upload(
                    "contrato-fornecimento.pdf",
                    "Contrato de Fornecimento",
                    [
                        "Contratante: Acme Ltda",
                        f"Contratada: {card.values['company_name']}",
                        "Vigência: 24 meses",
                    ],
                )
                return values, {"contract": [contract]}
            return values, {}
        return {}, {}

    def comment(self, s, phase, nxt):
        if phase == "compliance" and nxt == "triage":
            return "The bank details do not match the CNPJ; asking the supplier to confirm."
        return None


class EmployeeOnboarding(CardPlan):
    template = "employee_onboarding"
    paths = [
        (85, ["documents", "provisioning", "first_day", "onboarded"]),
        (15, ["documents", "cancelled"]),
    ]
    jobs = {
        "Finance": [("Accounts payable analyst", 5200), ("Controller", 14500), ("Treasury analyst", 6800)],
        "Operations": [
            ("Warehouse supervisor", 6100),
            ("Logistics assistant", 3300),
            ("Plant engineer", 11800),
        ],
        "Sales": [("Account executive", 7500), ("Inside sales representative", 4200)],
        "Marketing": [("Brand analyst", 6300), ("Social media specialist", 5100)],
        "Technology": [
            ("Software developer", 12500),
            ("IT support technician", 3900),
            ("Data analyst", 9200),
        ],
        "People": [("HR business partner", 9800), ("Recruiter", 5600)],
        "Legal": [("Corporate lawyer", 13900), ("Legal assistant", 4100)],
    }

    def start(self, s):
        rng = s.rng
        department = s.pick("department")
        job, salary = rng.choice(self.jobs[department])
        name = person_name(rng)
        first, last = _ascii(name.split()[0]).lower(), _ascii(name.split()[-1]).lower()
        start = s.local_date() + dt.timedelta(days=rng.randint(10, 35))
        while start.weekday() >= 5:
            start += dt.timedelta(days=1)
        work_model = rng.choices(["On-site", "Hybrid", "Remote"], weights=[3, 5, 2])[0]
        values = {
            "employee_name": name,
            "personal_email": f"{first}.{last}{rng.randint(1, 99)}@{rng.choice(['example.com', 'example.net'])}",
            "cpf": cpf(rng),
            "job_title": job,
            "department": department,
            "start_date": start.isoformat(),
            "employment_type": rng.choices(
                ["CLT", "Contractor (PJ)", "Intern", "Temporary"], weights=[14, 3, 2, 1]
            )[0],
            "monthly_salary": money(salary * rng.uniform(0.9, 1.15)),
            "work_model": work_model,
        }
        if rng.random() < 0.85:
            values["mobile_phone"] = mobile(rng)
        if work_model != "Remote":
            values["office"] = rng.choices(s.options["office"], weights=[6, 2, 2])[0]
        equipment = ["Laptop"] if rng.random() < 0.95 else []
        equipment += [e for e in ("Monitor", "Headset", "Mobile phone", "Access badge") if rng.random() < 0.5]
        if equipment:
            values["equipment"] = equipment
        if "Laptop" in equipment:
            values["laptop_profile"] = "Developer" if department == "Technology" else "Standard"
        values["systems"] = ["Email and calendar", "HR portal"] + (
            ["ERP"] if department in ("Finance", "Operations") else ["CRM"] if department == "Sales" else []
        )
        if rng.random() < 0.2:
            values["notes"] = "Needs a standing desk; will share the office with the controller."
        return values, {}, s.actor("renato"), ""

    def fill(self, s, card, phase, nxt):
        rng, v = s.rng, card.values
        if phase == "documents":
            if nxt == "provisioning":
                contract = pdf_upload(
                    "contrato-de-trabalho.pdf",
                    "Contrato Individual de Trabalho",
                    [
                        "Empregador: Acme Ltda",
                        f"Empregado(a): {v['employee_name']}",
                        f"Cargo: {v['job_title']}",
                    ],
                )
                return {
                    "hire_status": "Documents complete",
                    "documents_received": s.options["documents_received"],
                }, {"employment_contract": [contract]}
            if nxt == "cancelled":
                return {"hire_status": "Candidate withdrew"}, {}
            return {}, {}
        if phase == "provisioning":
            if nxt == "first_day":
                values = {"it_tasks": s.options["it_tasks"]}
                if "Laptop" in (v.get("equipment") or []):
                    values["asset_tag"] = f"ACME-{rng.randint(1000, 99999):05d}"
                return values, {}
            if nxt is None and rng.random() < 0.6:
                return {"it_tasks": s.options["it_tasks"][: rng.randint(1, 3)]}, {}
            return {}, {}
        if phase == "first_day" and nxt == "onboarded":
            values = {"orientation_done": True}
            if rng.random() < 0.5:
                values["first_week_feedback"] = rng.choice(
                    ["Settled in well; buddy was very helpful.", "Still waiting for VPN access on day 3."]
                )
            return values, {}
        return {}, {}

    def not_before(self, s, card, phase):
        if phase != "first_day":
            return None
        start = dt.date.fromisoformat(card.values["start_date"]) + dt.timedelta(days=s.rng.randint(0, 4))
        return dt.datetime.combine(start, dt.time(17, 0), tzinfo=zoneinfo.ZoneInfo(TIME_ZONE))

    def comment(self, s, phase, nxt):
        if phase == "documents" and nxt == "cancelled":
            return "The candidate accepted a counter-offer and withdrew."
        return None


class CreditAnalysis(CardPlan):
    template = "credit_analysis"
    paths = [
        (55, ["bureau", "analysis", "approved"]),
        (15, ["bureau", "rejected"]),
        (15, ["bureau", "analysis", "rejected"]),
    ]
    committee_paths = [
        (70, ["bureau", "analysis", "committee", "approved"]),
        (20, ["bureau", "analysis", "committee", "rejected"]),
        (10, ["bureau", "rejected"]),
    ]

    def path(self, s, values):
        large = Decimal(values["requested_limit"]["amount"]) > 100000
        paths = self.committee_paths if large else self.paths
        weights, options = zip(*paths, strict=True)
        return s.rng.choices(options, weights=weights)[0]

    def start(self, s):
        rng = s.rng
        customer = rng.choice(s.companies)
        limit = Decimal(rng.choice([5000, 15000, 30000, 50000, 80000, 120000, 250000, 500000]))
        values = {
            "customer_name": customer.name,
            "customer_cnpj": customer.cnpj,
            "segment": s.pick("segment"),
            "requested_limit": money(limit),
            "payment_term": s.pick("payment_term"),
            "sales_rep_email": s.users["renato"].email,
        }
        if rng.random() < 0.7:
            values["expected_monthly_purchases"] = money(
                limit * Decimal(str(round(rng.uniform(0.2, 0.6), 2)))
            )
        if rng.random() < 0.3:
            values["collateral_offered"] = True
            values["collateral_description"] = rng.choice(
                ["Bank guarantee from Itaú for 50% of the limit.", "Fiduciary sale of two delivery trucks."]
            )
        if rng.random() < 0.25:
            values["order_waiting"] = True
            values["order_deadline"] = (s.local_date() + dt.timedelta(days=rng.randint(2, 10))).isoformat()
        if rng.random() < 0.6:
            values["customer_phone"] = f"+55 11 3{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        statements = pdf_upload(
            "demonstracoes-financeiras.pdf",
            "Demonstrações Financeiras",
            [
                customer.name,
                f"CNPJ: {customer.cnpj}",
                f"Receita líquida: {brl(money(limit * rng.randint(8, 40)))}",
                f"Patrimônio líquido: {brl(money(limit * rng.randint(2, 10)))}",
            ],
        )
        return values, {"financial_statements": [statements]}, s.actor("renato"), ""

    def fill(self, s, card, phase, nxt):
        rng, v = s.rng, card.values
        limit = Decimal(v["requested_limit"]["amount"])
        if phase == "bureau" and nxt:
            if nxt == "rejected":
                return {"bureau_score": str(rng.randint(120, 380)), "negative_records": "Above R$ 5,000"}, {}
            return {
                "bureau_score": str(rng.randint(480, 960)),
                "negative_records": rng.choices(s.options["negative_records"][:2], weights=[8, 1])[0],
            }, {}
        if phase == "analysis" and nxt in ("approved", "committee", "rejected"):
            rating = {
                "approved": rng.choice(["A - low", "B - moderate"]),
                "committee": rng.choice(["B - moderate", "C - high"]),
                "rejected": rng.choice(["C - high", "D - very high"]),
            }[nxt]
            recommended = limit if nxt != "rejected" else Decimal(0)
            return {
                "revenue_last_year": money(limit * rng.randint(8, 40)),
                "debt_ratio": str(rng.randint(20, 180)),
                "risk_rating": rating,
                "recommended_limit": money(recommended),
                "analyst_opinion": {
                    "approved": "Healthy cash generation and no restrictions; the limit fits its purchases.",
                    "committee": "Solid company, but the limit is above the analyst's authority.",
                    "rejected": "High leverage and recent payment delays with other suppliers.",
                }[nxt],
            }, {}
        if phase == "committee" and nxt:
            if nxt == "rejected":
                return {"committee_decision": "Rejected", "committee_date": s.local_date().isoformat()}, {}
            if rng.random() < 0.35:
                return {
                    "committee_decision": "Approved with a lower limit",
                    "approved_limit": money(limit * Decimal("0.6")),
                    "committee_date": s.local_date().isoformat(),
                }, {}
            return {"committee_decision": "Approved", "committee_date": s.local_date().isoformat()}, {}
        return {}, {}

    def comment(self, s, phase, nxt):
        if phase == "committee" and nxt:
            return "Decided at this week's credit committee."
        return None


PLANS: dict[str, CardPlan] = {
    plan.template: plan
    for plan in (AccountsPayable(), SupplierOnboarding(), EmployeeOnboarding(), CreditAnalysis())
}


# ---------------------------------------------------------------- seeding


def demo_seed(*, cards: int = DEFAULT_CARDS, seed: int = 7) -> DemoSummary:
    """Create the demo in one transaction. Raises DemoExists when any of it is there already."""
    started = time.monotonic()
    if demo_exists():
        raise DemoExists(ORG_SLUG)
    rng = random.Random(seed)
    # The people and companies of the demo are made up: their notifications go nowhere.
    with (
        override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"),
        transaction.atomic(),
    ):
        org = Organization.objects.create(name=ORG_NAME, slug=ORG_SLUG, time_zone=TIME_ZONE, currency="BRL")
        users = _create_users(org)
        pipes = {}
        for name in TEMPLATE_SHARES:
            pipe = design_import(actor=SYSTEM, organization=org, definition=process_template_load(name))
            for person in DEMO_USERS:
                if person.role != "owner":
                    design_grant(actor=SYSTEM, pipe=pipe, user=users[person.username], role=person.role)
            pipes[name] = pipe
        companies = [company(rng) for _ in range(40)]
        jobs = _schedule(rng, cards)
        with simulated_clock() as clock:
            for name, created_at in jobs:
                pipe = pipes[name]
                context = _Seed(
                    rng=rng,
                    clock=clock,
                    pipe=pipe,
                    phases={p.key: p for p in pipe.phases.all()},
                    options={f.key: list(f.options) for f in pipe.fields.all() if f.options},
                    labels=list(pipe.labels.all()),
                    users=users,
                    companies=companies,
                )
                _card_journey(context, PLANS[name], created_at)
    return _summary(org, list(pipes.values()), time.monotonic() - started)


def _create_users(org: Organization) -> dict[str, Any]:
    User = get_user_model()
    users = {}
    password = make_password(DEMO_PASSWORD)  # one slow hash for everyone: they share the password
    for person in DEMO_USERS:
        user = User.objects.create(
            username=person.username,
            password=password,
            email=f"{_ascii(person.first_name).lower()}.{_ascii(person.last_name).lower()}@acme.example",
            first_name=person.first_name,
            last_name=person.last_name,
            is_staff=person.role == "owner",  # the owner designs pipes in the admin
        )
        if person.role == "owner":
            Membership.objects.create(organization=org, user=user, role=OrgRole.OWNER)
        users[person.username] = user
    return users


def _business_time(rng: random.Random, moment: dt.datetime) -> dt.datetime:
    """`moment`, or the start of the next working period (Monday to Friday, 8:00 to 18:00 local)."""
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    local = moment.astimezone(tz)
    if local.hour >= 18:
        local = (local + dt.timedelta(days=1)).replace(hour=8, minute=0)
    elif local.hour < 8:
        local = local.replace(hour=8, minute=0)
    else:
        return moment.astimezone(dt.UTC)
    while local.weekday() >= 5:
        local += dt.timedelta(days=1)
    local += dt.timedelta(minutes=rng.randint(0, 120), seconds=rng.randint(0, 59))
    return local.astimezone(dt.UTC)


def _schedule(rng: random.Random, cards: int) -> list[tuple[str, dt.datetime]]:
    """(template, creation moment) of every card, oldest first; more cards are recent than old."""
    now = timezone.now()
    tz = zoneinfo.ZoneInfo(TIME_ZONE)
    jobs = []
    counts = {name: int(cards * share) for name, share in TEMPLATE_SHARES.items()}
    counts["accounts_payable"] += cards - sum(counts.values())
    for name, count in counts.items():
        for _ in range(count):
            days_ago = min(rng.expovariate(1 / 14), 75)
            local = (now - dt.timedelta(days=days_ago)).astimezone(tz)
            local = local.replace(
                hour=rng.randint(8, 17), minute=rng.randint(0, 59), second=rng.randint(0, 59)
            )
            moment = _business_time(rng, local.astimezone(dt.UTC))
            jobs.append((name, min(moment, now - dt.timedelta(minutes=rng.randint(20, 240)))))
    jobs.sort(key=lambda job: job[1])
    return jobs


def _card_journey(s: _Seed, plan: CardPlan, created_at: dt.datetime) -> None:
    """Create one card and walk it along its path as far as the time until now allows."""
    rng, clock = s.rng, s.clock
    limit = clock.real_now() - dt.timedelta(minutes=5)
    clock.at(created_at)
    values, files, actor, email = plan.start(s)
    card = card_create(actor=actor, pipe=s.pipe, values=values, files=files, requester_email=email)
    moment = created_at
    worker = s.worker()
    if rng.random() < 0.8:
        clock.at(moment := moment + dt.timedelta(minutes=rng.randint(5, 50)))
        card = card_assign(actor=s.actor(worker), card=card, users=[s.users[worker]])
    if plan.template == "employee_onboarding":
        start = dt.date.fromisoformat(card.values["start_date"])
        due = dt.datetime.combine(start, dt.time(9, 0), tzinfo=zoneinfo.ZoneInfo(TIME_ZONE))
        clock.at(moment := moment + dt.timedelta(minutes=rng.randint(1, 30)))
        card = card_set_due(actor=s.actor("ana.admin"), card=card, due_at=due)
    if s.labels and rng.random() < 0.25:
        clock.at(moment := moment + dt.timedelta(minutes=rng.randint(1, 30)))
        card = card_set_labels(actor=s.actor("marcos"), card=card, labels=[rng.choice(s.labels)])

    path = plan.path(s, card.values)
    for current, nxt in zip(path, path[1:], strict=False):
        phase = s.phases[current]
        # Most cards leave within their SLA; some wait much longer (a supplier who does not answer).
        factor = rng.uniform(0.2, 1.3) if rng.random() < 0.8 else rng.uniform(1.3, 4)
        leave_at = moment + dt.timedelta(hours=factor * (phase.sla_hours or 24))
        leave_at = _business_time(rng, max(leave_at, plan.not_before(s, card, current) or leave_at))
        if leave_at > limit:
            break
        work_at = max(moment, leave_at - dt.timedelta(minutes=rng.randint(5, 45)))
        clock.at(work_at)
        card = _apply(s, plan, card, current, nxt, worker)
        text = plan.comment(s, current, nxt)
        if text:
            clock.at(work_at + dt.timedelta(minutes=1, seconds=rng.randint(0, 59)))
            author = "rita" if current in ("approval", "compliance", "committee") else worker
            card_comment(actor=s.actor(author), card=card, text=text)
        clock.at(leave_at)
        try:
            card = card_move(actor=s.actor(worker), card=card, to_phase=s.phases[nxt])
        except CardTransitionError:
            break  # the next phase is full (a blocking WIP limit): the card waits here
        moment = leave_at
    if not card.phase.is_final:
        _work_in_progress(s, plan, card, card.phase.key, moment, limit)


def _apply(s: _Seed, plan: CardPlan, card: Card, phase: str, nxt: str | None, worker: str) -> Card:
    values, uploads = plan.fill(s, card, phase, nxt)
    if values:
        card = card_update_fields(actor=s.actor(worker), card=card, values=values)
    for key, files in uploads.items():
        card_attach_files(actor=s.actor(worker), card=card, uploads=files, field_key=key)
        card.refresh_from_db()
    return card


def _work_in_progress(
    s: _Seed, plan: CardPlan, card: Card, phase: str, since: dt.datetime, limit: dt.datetime
) -> None:
    """A card that stays in `phase`: sometimes partly filled in, sometimes with a question from the requester."""
    rng = s.rng

    def at(share: float) -> bool:
        moment = _business_time(rng, since + (limit - since) * share)
        if moment > limit:
            return False
        s.clock.at(moment)
        return True

    if rng.random() < 0.5 and at(rng.uniform(0.1, 0.5)):
        card = _apply(s, plan, card, phase, None, s.worker())
    if plan.template == "employee_onboarding" and phase == "documents" and rng.random() < 0.5 and at(0.6):
        buddy = person_name(rng).rsplit(" ", 1)[0]
        card = card_update_fields(actor=s.actor("renato"), card=card, values={"onboarding_buddy": buddy})
    if card.created_by_id == s.users["renato"].pk and rng.random() < 0.12 and at(rng.uniform(0.7, 0.95)):
        card_comment(actor=s.actor("renato"), card=card, text="Any news on this one? The team is asking.")


def _summary(org: Organization, pipes: list[Pipe], seconds: float) -> DemoSummary:
    from django.db.models import Count

    from pipes.models import CardEvent

    by_phase = {}
    for pipe in pipes:
        counts = dict(pipe.cards.values_list("phase_id").annotate(n=Count("id")).values_list("phase_id", "n"))
        by_phase[pipe.name] = Counter({phase.name: counts.get(phase.pk, 0) for phase in pipe.phases.all()})
    return DemoSummary(
        organization=org,
        pipes=pipes,
        cards=Card.objects.filter(pipe__organization=org).count(),
        events=CardEvent.objects.filter(card__pipe__organization=org).count(),
        seconds=seconds,
        by_phase=by_phase,
    )
