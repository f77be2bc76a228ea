from pipes.services import Actor, card_create, card_move, card_update_fields
from tests.personas import good_start_values


def test_it_creates_and_moves_a_card(world):
    card = card_create(actor=Actor.for_user(world.member), pipe=world.pipe, values=good_start_values())
    card.refresh_from_db()
    assert card.title == "Laptop for Ana"
    assert card.values["amount"] == {"amount": "4500.00", "currency": "BRL"}
    card_update_fields(actor=Actor.for_user(world.member), card=card, values={"category": "Hardware"})
    card_move(actor=Actor.system(), card=card, to_phase=world.phase("rejected"))
    card.refresh_from_db()
    assert card.phase.key == "rejected" and card.finished_at is not None
    assert list(card.events.values_list("kind", flat=True)) == ["created", "fields_changed", "moved"]
