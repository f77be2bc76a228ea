"""The demo's card plans: for each process template, how a card is filled, assigned, labelled, commented
and moved through its phases (CardPlan and one subclass per template), and what they share: the seeding context and the simulated clock
that lets the seed write history.
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import timezone

from pipes.models import Card, Label, Phase, Pipe
from pipes.services import (
    Actor,
)

from .demo_data import Company, ascii_text, brl, company, cpf, mobile, money, pdf_upload, person_name

TIME_ZONE = "America/Sao_Paulo"
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


# ---------------------------------------------------------------- the seeding context


@dataclass
class Seed:
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

    def start(self, s: Seed) -> tuple[dict, dict, Actor, str]:
        """Start-form values, uploads, the actor filing it and the requester's email."""
        raise NotImplementedError

    def path(self, s: Seed, values: dict) -> list[str]:
        weights, paths = zip(*self.paths, strict=True)
        return s.rng.choices(paths, weights=weights)[0]

    def fill(self, s: Seed, card: Card, phase: str, nxt: str | None) -> tuple[dict, dict]:
        """Field values and uploads (by attachment field) to set in `phase` before moving to `nxt`
        (None: the card stays, partly worked)."""
        return {}, {}

    def comment(self, s: Seed, phase: str, nxt: str | None) -> str | None:
        return None

    def not_before(self, s: Seed, card: Card, phase: str) -> dt.datetime | None:
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
        first, last = ascii_text(name.split()[0]).lower(), ascii_text(name.split()[-1]).lower()
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
