"""The floor of a rail step: a Celery app whose tasks do nothing, for bench/rail.py to drain in the same run.

The least work a step's message must cost on this machine and broker: published, delivered to one
`-P solo` worker, run (nothing), acknowledged late, as ../shared/floors/capp.py does. No Django, no
database. bench/rail.py starts a worker on this app (`celery -A bench.railfloor worker -P solo`),
publishes N `noop` messages and one `last`, and times from the first publish to the moment `last`
ran (it writes the time to RAILFLOOR_DONE): one worker runs its queue in order, so all ran by then.

Configured from the environment: RAILFLOOR_BROKER (the broker URL), RAILFLOOR_QUEUE,
RAILFLOOR_PREFETCH (prefetch multiplier, default 16 as capp.py), RAILFLOOR_DONE (a file path).
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("railfloor", broker=os.environ.get("RAILFLOOR_BROKER", "redis://127.0.0.1:6379/14"))
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("RAILFLOOR_PREFETCH", "16")),
    task_default_queue=os.environ.get("RAILFLOOR_QUEUE", "railfloor"),
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)


@app.task(name="railfloor.noop")
def noop(i: int) -> int:
    return i


@app.task(name="railfloor.last")
def last() -> None:
    with open(os.environ["RAILFLOOR_DONE"], "w") as out:
        out.write(repr(time.time()))
