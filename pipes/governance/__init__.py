"""Governance: SLA marks and the SLA report, data-subject requests (export and erasure), retention, the
audit trail, and their pages.

- sla.py: `sla_mark_late` / `sla_preview` (the rail's beat runs the marks every minute);
  sla_report.py: a pipe's SLA figures for a month, computed in the database;
- privacy.py: `subject_export` / `subject_erase` for one person (LGPD/GDPR), and the `person_erasing` /
  `person_exporting` signals through which the rail adds its records;
- retention.py: `retention_apply` anonymises finished cards past a pipe's retention; `trace_retention_apply`
  prunes step traces through the pruner the rail registers (`register_trace_pruner`);
- audit.py: the audit trail of a pipe, a card or an organization, merged from the timeline and the audit log;
- selectors.py: who may govern; views.py and urls.py: the pages, mounted at /governance/.

Card writes go through pipes.services. The package re-exports the services' public names, so callers
import them from `pipes.governance`.
"""

from .privacy import (
    ErasedCard,
    ErasureReport,
    erasure_patterns,
    person_erasing,
    person_exporting,
    privacy_requests,
    subject_cards,
    subject_digest,
    subject_erase,
    subject_export,
    subject_export_data,
    subject_fields,
    subject_pipes,
)
from .retention import (
    RETENTION_ACTOR_NAME,
    RetentionRun,
    TracePruning,
    pipe_policy,
    pipe_policy_update,
    register_trace_pruner,
    retention_apply,
    retention_due,
    retention_runs,
    trace_retention_apply,
    trace_retention_cutoffs,
)
from .selectors import governed_pipes, owned_organizations
from .sla import SLA_ACTOR_NAME, SlaPlan, SlaResult, sla_mark_late, sla_preview

__all__ = [
    "SLA_ACTOR_NAME",
    "SlaPlan",
    "SlaResult",
    "sla_preview",
    "sla_mark_late",
    "person_erasing",
    "person_exporting",
    "subject_digest",
    "subject_fields",
    "subject_pipes",
    "subject_cards",
    "subject_export_data",
    "subject_export",
    "ErasedCard",
    "ErasureReport",
    "erasure_patterns",
    "subject_erase",
    "privacy_requests",
    "RETENTION_ACTOR_NAME",
    "pipe_policy",
    "pipe_policy_update",
    "retention_due",
    "RetentionRun",
    "retention_apply",
    "retention_runs",
    "trace_retention_cutoffs",
    "TracePruning",
    "register_trace_pruner",
    "trace_retention_apply",
    "governed_pipes",
    "owned_organizations",
]
