"""manage.py seed_demo [--reset] [--cards N] [--seed S]: a demo company with people, pipes and cards."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.management.demo import (
    DEFAULT_CARDS,
    DEMO_PASSWORD,
    DEMO_USERS,
    ORG_NAME,
    ORG_SLUG,
    DemoExists,
    demo_exists,
    demo_reset,
    demo_seed,
)
from pipes.siteaddress import site_url


class Command(BaseCommand):
    help = (
        "Create the demo: the organization Acme Ltda, a person for each role, the four process "
        "templates as pipes and a few hundred cards with real timelines."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="remove an existing demo first")
        parser.add_argument(
            "--cards", type=int, default=DEFAULT_CARDS, help=f"how many cards (default {DEFAULT_CARDS})"
        )
        parser.add_argument(
            "--seed", type=int, default=7, help="random seed: the same seed gives the same demo"
        )
        parser.add_argument(
            "--language",
            default=settings.LANGUAGE_CODE,
            help="en or pt-BR: the language of the demo's names, processes and cards "
            "(default: the site's language, LANGUAGE_CODE)",
        )

    def handle(self, *args, reset: bool, cards: int, seed: int, language: str, **options):
        if cards < 0:
            raise CommandError(_("--cards must be 0 or more."))
        if demo_exists():
            if not reset:
                raise CommandError(
                    _(
                        "The demo is already there (organization %(slug)s or its people). Run seed_demo --reset to recreate it."
                    )
                    % {"slug": ORG_SLUG}
                )
            demo_reset()
            self.stdout.write(_("Removed the previous demo."))
        try:
            summary = demo_seed(cards=cards, seed=seed, language=language)
        except DemoExists:
            raise CommandError(
                _("Someone created the demo at the same time; run seed_demo --reset.")
            ) from None

        self.stdout.write(
            _(
                "Created %(org)s: %(pipes)d pipes, %(cards)d cards, %(events)d timeline events in %(seconds).1f s."
            )
            % {
                "org": ORG_NAME,
                "pipes": len(summary.pipes),
                "cards": summary.cards,
                "events": summary.events,
                "seconds": summary.seconds,
            }
        )
        for pipe in summary.pipes:
            phases = ", ".join(f"{name} {count}" for name, count in summary.by_phase[pipe.name].items())
            self.stdout.write(f"  {pipe.name} (/pipes/{pipe.pk}/): {phases}")
        self.stdout.write("")
        width = max(len(u.username) for u in DEMO_USERS) + 2
        self.stdout.write(f"  {_('User'):<{width}}{_('Password'):<14}{_('Role'):<12}{_('What they do')}")
        for person in DEMO_USERS:
            self.stdout.write(
                f"  {person.username:<{width}}{DEMO_PASSWORD:<14}{person.role:<12}{person.does}"
            )
        self.stdout.write("")
        self.stdout.write(
            _("Open %(url)s/ and sign in as marcos (or any user above) with the password %(password)s.")
            % {"url": site_url(), "password": DEMO_PASSWORD}
        )
