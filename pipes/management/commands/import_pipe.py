"""manage.py import_pipe FILE --org SLUG: create a pipe from a process definition (YAML)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.design import SYSTEM, DefinitionError, definition_load, design_import
from pipes.models import Organization


class Command(BaseCommand):
    help = "Create a pipe in an organization from a process definition file (see docs/process-format.md)."

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="the YAML definition, e.g. pipes/design/templates/accounts_payable.yaml"
        )
        parser.add_argument("--org", required=True, help="slug of the organization that receives the pipe")

    def handle(self, *args, file: str, org: str, **options):
        try:
            organization = Organization.objects.get(slug=org)
        except Organization.DoesNotExist:
            raise CommandError(
                _("There is no organization with the slug '%(slug)s'.") % {"slug": org}
            ) from None
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(_("Cannot read %(file)s: %(error)s") % {"file": file, "error": exc}) from None
        try:
            pipe = design_import(actor=SYSTEM, organization=organization, definition=definition_load(text))
        except DefinitionError as exc:
            for message in exc.messages:
                self.stderr.write(f"{path.name}: {message}")
            raise CommandError(
                _("%(file)s has %(n)d problem(s); nothing was imported.")
                % {"file": path.name, "n": len(exc.messages)}
            ) from None
        self.stdout.write(
            _(
                "Created pipe %(name)s (%(slug)s, %(phases)d phases, %(fields)d fields) in %(org)s: /pipes/%(id)d/"
            )
            % {
                "name": pipe.name,
                "slug": pipe.slug,
                "phases": pipe.phases.count(),
                "fields": pipe.fields.count(),
                "org": organization.name,
                "id": pipe.pk,
            }
        )
