"""The rail: runs each phase's steps by the right mechanism and keeps the record of it.

dispatch   phase entries to workers (pipes' hooks), the outbox sweep
tasks      the Celery tasks (thin: take ids), under their orchestrator.tasks.* names
loop       an entry's steps in order: claims, leases, one step's execution
router     who settles a step: an automation, a rule, a local or foundation model, a person
apply      applying a result through pipes.services; handing over to a person; retries, failures
trace      a run's trace events, its ledger of external calls, its timeline record
results    what a step comes to (Apply, Handover, Usage, the failures)
costs      money and tokens; reasons: routing reasons in the reader's language
definitions  the YAML extension for agents and steps; privacy: erasure, export, trace retention
services, selectors, views, urls   the rail's own writes and reads, and its run and cost pages

The rail never imports the reviewer inbox (orchestrator.inbox): the inbox subscribes to what the rail
offers (ReviewTask rows, orchestrator.rail.privacy.register_review_export).
"""
