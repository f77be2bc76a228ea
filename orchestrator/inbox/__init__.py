"""The reviewer inbox: review tasks across pipes, sorted by SLA urgency, decided on one screen.

Built on the rail (orchestrator.models.ReviewTask, orchestrator.rail.services._review_decide): this app adds
what a reviewer's day needs around a task — its due time and escalation, four-eyes sign-offs,
delegation, bulk approval, the requester's corrections, and the notifications.
"""
