"""The Celery worker processes bench/rail.py starts, and the floors they drain: a `celery worker`
(Trilho's app or bench/railfloor.py's) as a subprocess with its CPU read from /proc, the brokers'
checks, and the no-op floors measured in the same run as the rail's figures (the warm drain on the
run's broker, and the floor as ../shared/floors/README.md runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pool_options(concurrency: int) -> list[str]:
    """One process: `-P solo` (the floor's definition, ../shared/floors/); more: Celery's prefork pool
    with that many child processes, as `celery -A orchestrator worker` runs in docker-compose.yml (its
    default concurrency is the CPU count)."""
    return ["-P", "solo", "-c", "1"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]


def pool_name(concurrency: int) -> str:
    return "one process, -P solo" if concurrency == 1 else f"prefork, {concurrency} processes"


class Worker:
    """One `celery worker` consuming one queue (of Trilho's app, or of `app`): `-P solo`, or prefork
    with `concurrency` child processes."""

    def __init__(
        self,
        *,
        env: dict,
        queue: str,
        app: str = "orchestrator",
        prefetch: int = 0,
        concurrency: int = 1,
        name: str = "",
    ):
        celery = str(Path(sys.executable).parent / "celery")
        # 0: the app's own prefetch multiplier (Trilho's settings: 1; the floor's app: its own)
        options = ["--prefetch-multiplier", str(prefetch)] if prefetch else []
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [
                celery,
                "-A",
                app,
                "worker",
                *pool_options(concurrency),
                "-Q",
                queue,
                "-n",
                f"bench-{queue}{name}@%h",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "warning",
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_ready(self, check, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit("the worker did not start:\n" + "\n".join(self.lines[-40:]))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker so far, its pool's child processes included (Linux
        /proc; a child that ended counts through its parent's cutime and cstime)."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(the main process's CPU seconds, its pool's child processes'), as cpu_seconds."""
        pids = process_tree(self.process.pid)
        main = children = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks = int(fields[11]) + int(fields[12])
            if pid == self.process.pid:
                main += ticks
                children += int(fields[13]) + int(fields[14])
            else:
                children += ticks
        if not pids:
            return float("nan"), float("nan")
        return main / os.sysconf("SC_CLK_TCK"), children / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Workers:
    """Several workers on one queue, as one: the fast lane's solo processes (docker-compose.yml's
    worker-fast, one replica per CPU)."""

    def __init__(self, workers: list[Worker]):
        self.workers = workers

    @property
    def lines(self) -> list[str]:
        return [line for w in self.workers for line in w.lines]

    def wait_ready(self, check, timeout: float = 60) -> None:
        self.workers[0].wait_ready(check, timeout)

    def cpu_split(self) -> tuple[float, float]:
        splits = [w.cpu_split() for w in self.workers]
        return sum(main for main, _pool in splits), sum(pool for _main, pool in splits)

    def stop(self) -> None:
        for w in self.workers:
            w.process.terminate()
        for w in self.workers:
            w.stop()


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, found = [root], True
    while found:
        found = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.append(pid)
                found = True
    return tree if root in parents else []


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far (Linux /proc); None when it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_check(url: str) -> str | None:
    """None when the broker answers, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure means no broker to measure on
        return exc.__class__.__name__
    return None


def queue_delete(url: str, *queues: str) -> None:
    """RabbitMQ keeps a queue until it is deleted (Redis drops an empty one)."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            for name in queues:
                conn.default_channel.queue_delete(name)
    except Exception:  # noqa: BLE001 - a bench's leftover queue is no reason to fail
        pass


# Environment variables Celery reads before any app's own settings (a broker URL given to the app
# included): a floor's processes take their broker from RAILFLOOR_BROKER alone.
CELERY_BROKER_ENV = ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL")


def floor_env() -> dict:
    """The environment of a floor's processes: this one's, without Django's settings module (with it,
    Celery's Django fix-up would set Django up in the worker and check its database connections
    around every task: no longer the floor) and without Celery's broker variables (they would win over
    RAILFLOOR_BROKER: the bench sets CELERY_BROKER_URL for Trilho's worker)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("DJANGO_SETTINGS_MODULE", *CELERY_BROKER_ENV):
        env.pop(name, None)
    return env


def floor_run(*, broker: str, tasks: int, prefetch: int, concurrency: int = 1) -> tuple[float, float, float]:
    """Drain `tasks` no-op messages with a worker of bench/railfloor.py on `broker`: `-P solo`, or
    prefork with `concurrency` processes.

    Returns (tasks per second from the first publish to the last task run, worker CPU ms per task, and
    of it the main process's: with prefork, receiving, handing over and acknowledging).
    The worker is started and warmed up first: its start-up is not counted."""
    queue = f"railfloor-{uuid.uuid4().hex[:8]}"
    done = Path(tempfile.mkdtemp(prefix="trilho-railfloor-")) / "done"
    settings = {
        "RAILFLOOR_BROKER": broker,
        "RAILFLOOR_QUEUE": queue,
        "RAILFLOOR_PREFETCH": str(prefetch),
        "RAILFLOOR_DONE": str(done),
    }
    os.environ.update(settings)  # read by bench/railfloor.py, here and in the worker
    env = floor_env()
    sys.path.insert(0, str(ROOT))
    from bench import railfloor

    railfloor.app.conf.task_default_queue = railfloor.app.conf.task_default_routing_key = queue
    railfloor.app.amqp.__dict__.pop("queues", None)  # the queues are derived once; this run has its own
    railfloor.app.amqp.__dict__.pop("default_queue", None)
    railfloor.app.amqp.__dict__.pop("router", None)
    worker = Worker(env=env, queue=queue, app="bench.railfloor", concurrency=concurrency)
    try:
        railfloor.last.delay()  # warm up: the worker consumes
        worker.wait_ready(done.exists)
        time.sleep(0.1)
        done.unlink()
        split_before = worker.cpu_split()
        with railfloor.app.producer_or_acquire() as producer:
            started = time.time()
            for i in range(tasks):
                railfloor.noop.apply_async((i,), producer=producer)
            railfloor.last.apply_async(producer=producer)
        deadline = time.monotonic() + 600
        while not (done.exists() and done.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not done.exists():
            raise SystemExit("the floor's worker did not drain its queue:\n" + "\n".join(worker.lines[-40:]))
        finished = float(done.read_text())
        main, children = (
            after - before for after, before in zip(worker.cpu_split(), split_before, strict=True)
        )
    finally:
        worker.stop()
        queue_delete(broker, queue)
    return (
        (tasks + 1) / (finished - started),
        1000 * (main + children) / (tasks + 1),
        1000 * main / (tasks + 1),
    )


SEND_FLOOR = (
    "import sys\n"
    "from bench import railfloor\n"
    "with railfloor.app.producer_or_acquire() as producer:\n"
    "    for i in range(int(sys.argv[1])):\n"
    "        railfloor.noop.apply_async((i,), producer=producer)\n"
    "    railfloor.last.apply_async(producer=producer)\n"
)


def shared_floor_run(*, broker: str, tasks: int) -> float:
    """The floor of a rail step as ../shared/floors/README.md defines and runs it (capp.py, send.py):
    `tasks` no-op messages and a last one sent to Redis first, then one `-P solo` worker (acks late,
    prefetch 16) started, and timed from its start until the last one ran: tasks per second, the
    worker's start-up included. The floor issue 17 names; bench/railfloor.py is capp.py's app."""
    queue = f"railfloor-{uuid.uuid4().hex[:8]}"
    done = Path(tempfile.mkdtemp(prefix="trilho-railfloor-")) / "done"
    env = {
        **floor_env(),
        "RAILFLOOR_BROKER": broker,
        "RAILFLOOR_QUEUE": queue,
        "RAILFLOOR_PREFETCH": "16",
        "RAILFLOOR_DONE": str(done),
    }
    subprocess.run([sys.executable, "-c", SEND_FLOOR, str(tasks)], env=env, cwd=ROOT, check=True)
    started = time.time()
    worker = Worker(env=env, queue=queue, app="bench.railfloor")
    try:
        worker.wait_ready(lambda: done.exists() and done.read_text(), timeout=600)
        finished = float(done.read_text())
    finally:
        worker.stop()
        queue_delete(broker, queue)
    return (tasks + 1) / (finished - started)
