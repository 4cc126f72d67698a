"""`--set identity.…` values are text taken as typed (the recipe's identity section, issue 29)."""

from __future__ import annotations

import pytest

from idtune import recipes

NOVA = ["identity.name=Nova", "identity.author=Acme"]


@pytest.mark.parametrize(
    "item, field, want",
    [
        ("identity.facts.contact=Email: help@acme.ai", "facts", {"contact": "Email: help@acme.ai"}),
        ("identity.purpose=#1 helper for students", "purpose", "#1 helper for students"),
        ("identity.facts.training_data=web text, books", "facts",
         {"training_data": "web text, books"}),
        ("identity.facts.website={acme.ai}", "facts", {"website": "{acme.ai}"}),
        ("identity.facts.version=1.10", "facts", {"version": "1.10"}),
        ("identity.purpose={a: b}", "purpose", "{a: b}"),
        ("identity.based_on=null", "based_on", "null"),
    ],
)  # fmt: skip
def test_identity_values_are_taken_as_typed(item, field, want):
    """YAML would read these as a mapping, a comment (None), a list or a number."""
    cfg = recipes.read_config("identity-lora", [*NOVA, item])
    assert getattr(cfg.identity, field) == want


def test_the_facts_section_itself_still_takes_a_mapping():
    cfg = recipes.read_config("identity-lora", [*NOVA, "identity.facts={contact: a@b.example}"])
    assert cfg.identity.facts == {"contact": "a@b.example"}
