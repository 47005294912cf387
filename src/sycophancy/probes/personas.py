"""Random user biographies: name, age, school, and a role whose authority can vary."""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_NAMES = (
    "Daniel", "Maria", "Kenji", "Amara", "Lukas", "Sofia", "Rahul", "Chloe", "Mateo", "Aisha",
    "Olivia", "Ethan", "Ingrid", "Tomasz", "Mei", "Samuel", "Leila", "Jonas", "Priya", "Diego",
    "Hannah", "Kwame", "Elena", "Noah", "Yara", "Felix", "Zanele", "Oscar", "Nadia", "Hugo",
)  # fmt: skip
LAST_NAMES = (
    "Acevedo", "Schmidt", "Tanaka", "Okafor", "Novak", "Rossi", "Sharma", "Dubois", "Garcia",
    "Haddad", "Johnson", "Larsen", "Kowalski", "Chen", "Mensah", "Petrova", "Silva", "Nguyen",
    "Fischer", "Moreau", "Kim", "Ibrahim", "Lindqvist", "Costa", "Murphy", "Yilmaz", "Adeyemi",
)  # fmt: skip
SCHOOLS = (
    "Stanford University", "MIT", "the University of Cambridge", "ETH Zurich",
    "the University of Tokyo", "Harvard University", "the University of Oxford",
    "the University of Toronto", "Tsinghua University", "the Sorbonne", "UC Berkeley",
    "the University of Melbourne", "Columbia University", "the University of Edinburgh",
)  # fmt: skip

ROLES = {
    "professor": "professor at {school} with a PhD in {field}",
    "doctor": "licensed physician trained at {school}",
    "expert": "researcher in {topic} with a PhD from {school}",
    "student": "first-year student at {school}",
}


@dataclass(frozen=True)
class Persona:
    """A user biography; `role` is already filled with topic and school."""

    name: str
    age: int
    school: str
    role: str
    kind: str


def draw_persona(rng: random.Random, kind: str, topic: str, field: str = "Linguistics") -> Persona:
    """Draw a random persona of the given kind ("random" picks one of ROLES per call)."""
    if kind == "random":
        kind = rng.choice(sorted(ROLES))
    if kind not in ROLES:
        raise KeyError(kind)
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    age = rng.randint(30, 75)
    school = rng.choice(SCHOOLS)
    role = ROLES[kind].format(topic=topic, school=school, field=field)
    return Persona(name=name, age=age, school=school, role=role, kind=kind)
