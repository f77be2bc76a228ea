"""Realistic Brazilian data for the demo: company and person names, cities, CNPJ and CPF numbers with
valid check digits, phone numbers, amounts in reais and small PDF uploads, all drawn from one random.Random.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

from django.core.files.uploadedfile import SimpleUploadedFile

from .demo_pdf import demo_pdf

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


def ascii_text(text: str) -> str:
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
        return f"{ascii_text(first).lower()}.{ascii_text(last).lower()}@{self.domain}"


def company(rng: random.Random) -> Company:
    kind, name = rng.choice(COMPANY_KINDS), rng.choice(COMPANY_NAMES)
    # Reserved example domains: a demo must never email a real company.
    domain = ascii_text(name).lower().replace(" ", "") + ".example"
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
