"""manage.py erase_person --org SLUG --as USERNAME IDENTIFIER [--field KEY] [--dry-run] [--export FILE]."""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.governance import subject_erase, subject_export
from pipes.models import Organization
from pipes.services import CardError


class Command(BaseCommand):
    help = (
        "Answer a data-subject request: export (--export FILE) and/or erase everything held about a "
        "person in the pipes the acting admin (--as) administers. --dry-run shows what would be erased."
    )

    def add_arguments(self, parser):
        parser.add_argument("identifier", help="the person's email or other identifier")
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--as", dest="username", required=True, help="the pipe admin acting")
        parser.add_argument("--field", default="", help="search only this field key")
        parser.add_argument("--export", metavar="FILE", help="write the JSON export here first")
        parser.add_argument("--dry-run", action="store_true", help="rehearse the erasure; change nothing")
        parser.add_argument("--no-erase", action="store_true", help="only export")

    def handle(
        self, *args, identifier, org, username, field="", export=None, dry_run=False, no_erase=False, **o
    ):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(_("There is no organization “%(slug)s”.") % {"slug": org})
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(_("There is no active user “%(name)s”.") % {"name": username})
        if export:
            data, record = subject_export(
                user=user, organization=organization, identifier=identifier, field_key=field
            )
            with open(export, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2, ensure_ascii=False, default=str)
            self.stdout.write(
                _("export #%(id)d: %(n)d card(s) written to %(file)s")
                % {"id": record.pk, "n": len(data["cards"]), "file": export}
            )
        if no_erase:
            return
        try:
            report = subject_erase(
                user=user, organization=organization, identifier=identifier, field_key=field, dry_run=dry_run
            )
        except CardError as exc:
            raise CommandError(exc.message) from None
        for card in report.cards:
            self.stdout.write(
                f"{card.reference}: fields {', '.join(card.fields) or '-'}; files {len(card.files)}; "
                f"timeline payloads {card.events}; audit-log records {card.log_entries}"
            )
        totals = report.totals
        if dry_run:
            self.stdout.write(_("dry run: %(cards)d card(s) would be erased; nothing changed") % totals)
            return
        if report.timeline_breaks:
            for problem in report.timeline_breaks:
                self.stdout.write(problem)
            raise CommandError(_("erased, but the timelines above do not verify"))
        self.stdout.write(
            _("erasure #%(id)d: %(cards)d card(s) erased; their timelines verify")
            % {"id": report.request.pk, **totals}
        )
