"""manage.py export_pipe PIPE [--output FILE]: write a pipe's process definition as YAML."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from pipes.design import definition_dump, pipe_export
from pipes.models import Pipe


def pipe_from_reference(reference: str) -> Pipe:
    """The pipe named by an id ("12") or by organization and pipe slugs ("acme/accounts-payable")."""
    pipes = Pipe.objects.select_related("organization")
    if reference.isdigit():
        pipe = pipes.filter(pk=int(reference)).first()
    elif reference.count("/") == 1:
        org_slug, pipe_slug = reference.split("/")
        pipe = pipes.filter(organization__slug=org_slug, slug=pipe_slug).first()
    else:
        raise CommandError(
            _(
                "Name the pipe by its id (12) or as organization/pipe slugs (acme/accounts-payable), not '%(ref)s'."
            )
            % {"ref": reference}
        )
    if pipe is None:
        raise CommandError(_("There is no pipe '%(ref)s'.") % {"ref": reference})
    return pipe


class Command(BaseCommand):
    help = "Write the process definition of a pipe as YAML, to standard output or a file."

    def add_arguments(self, parser):
        parser.add_argument("pipe", help="pipe id, or organization-slug/pipe-slug")
        parser.add_argument("--output", "-o", help="write to this file instead of standard output")

    def handle(self, *args, pipe: str, output: str | None = None, **options):
        found = pipe_from_reference(pipe)
        text = definition_dump(pipe_export(found))
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(
                _("Cannot write %(file)s: %(error)s") % {"file": output, "error": exc}
            ) from None
        self.stdout.write(
            _("Wrote %(org)s/%(slug)s to %(file)s.")
            % {"org": found.organization.slug, "slug": found.slug, "file": output}
        )
