"""Webhooks: other systems open and move cards (inbound), and hear what happens to them (outbound).

paths      the small JSON path language of the inbound mappings ($.order.items[0].sku)
signing    HMAC-SHA256 signatures with a timestamp, both ways
inbound    a posted JSON body → card_create / card_update_fields / card_move, as a system actor naming
           the webhook, with every refusal a JSON error naming the field
outbound   events → outbox rows (WebhookDelivery) in the fact's own transaction; delivery through the
           agents' SSRF-guarded HTTP client, retries with exponential backoff, the sweep, "send again",
           auto-disable with a notice to the pipe's admins; a person's erasure redacts the deliveries
           (sent or waiting) of the cards it touched
receivers  the subscriptions: pipes.hooks.card_event_recorded, the rail's ReviewTask and StepRun rows,
           and pipes.governance.person_erasing
tasks      the Celery tasks orchestrator.webhooks.deliver and orchestrator.webhooks.sweep
views, urls, admin   the inbound URL, the delivery log page, the admin of the design objects
"""
