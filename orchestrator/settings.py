"""Trilho settings, read from the environment with defaults that run on a laptop.

Embedded default: SQLite and an on-disk Celery transport under TRILHO_DATA_DIR, so a fresh
machine needs nothing but pip. Production: DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY, ...
"""

import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from kombu import Queue

from orchestrator.brokers import AMQP_SCHEMES, REDIS_SCHEMES, broker_transport_options

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envrates(name: str) -> dict[tuple[str, str], tuple[Decimal, date]]:
    """Exchange rates set by the operator: comma-separated "USD:BRL=5.42@2026-12-01" (one USD is
    5.42 BRL, the rate of that day)."""
    rates: dict[tuple[str, str], tuple[Decimal, date]] = {}
    for item in (part.strip() for part in os.environ.get(name, "").split(",")):
        if not item:
            continue
        pair, _eq, rest = item.partition("=")
        source, _colon, target = pair.strip().upper().partition(":")
        number, _at, day = rest.partition("@")
        try:
            rate, as_of = Decimal(number.strip()), date.fromisoformat(day.strip())
        except (ValueError, ArithmeticError):
            rate, as_of = Decimal(0), None
        if len(source) != 3 or len(target) != 3 or source == target or not rate > 0 or as_of is None:
            raise ImproperlyConfigured(
                f'{name} entries look like "USD:BRL=5.42@2026-12-01" (a positive rate and the ISO date '
                f"it was taken), got {item!r}"
            )
        rates[(source, target)] = (rate, as_of)
    return rates


DATA_DIR = Path(os.environ.get("TRILHO_DATA_DIR", BASE_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-change-me-" + "x" * 32
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
# The address links in emails and pages use; when unset, the address each request came to
# (pipes.siteaddress.site_url, the one way to read it).
SITE_URL = os.environ.get("SITE_URL", "").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "guardian",
    "auditlog",
    "pipes",
    "agents",
    "orchestrator",
    "orchestrator.inbox",
    "ninja",  # the API's docs page serves Swagger UI from ninja's own static files (no CDN)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "pipes.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "pipes.middleware.NullCharacterMiddleware",
    "django.middleware.common.CommonMiddleware",
    "pipes.siteaddress.SiteAddressMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pipes.middleware.AccessCacheMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "pipes.middleware.OrganizationTimezoneMiddleware",
]

ROOT_URLCONF = "orchestrator.urls"
WSGI_APPLICATION = "orchestrator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{DATA_DIR / 'trilho.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web + worker) share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Short web and worker statements: a parallel plan's start-up (about 20 ms for a worker process
    # here) cost more than it saved -- a 100,000-card board's counts took 29 ms with one, 6 ms
    # without. TRILHO_DB_PARALLEL_WORKERS sets PostgreSQL's max_parallel_workers_per_gather.
    _parallel = envint("TRILHO_DB_PARALLEL_WORKERS", 0)
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "options", f"-c max_parallel_workers_per_gather={_parallel}"
    )
    # Server-side binding: psycopg sends a statement and its values apart (Django's default binds them
    # on the client into one string, and PostgreSQL parses and plans every statement anew), and
    # prepares a statement once it has run TRILHO_DB_PREPARE_THRESHOLD times on a connection (then
    # only binds and executes it). Measured on a rail step (bench/profile_rail.py): PostgreSQL 6.3 -> 3.2
    # ms and the worker 8.1 -> 7.0 ms of CPU on the code of issue 17's second round; 2.4 -> 1.4 and
    # 3.8 -> 3.3 ms on its third. Behind pgbouncer in transaction mode, prepared statements need pgbouncer
    # 1.21 or later with max_prepared_statements set; before that, set TRILHO_DB_PREPARE_THRESHOLD=off
    # (binding on the server alone works through any pooler) or TRILHO_DB_SERVER_SIDE_BINDING=false.
    if envbool("TRILHO_DB_SERVER_SIDE_BINDING", True):
        _threshold = os.environ.get("TRILHO_DB_PREPARE_THRESHOLD", "").strip().lower()
        DATABASES["default"]["OPTIONS"].update(
            server_side_binding=True,
            prepare_threshold=None
            if _threshold in ("off", "none", "false")
            else envint("TRILHO_DB_PREPARE_THRESHOLD", 5),
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # Django's ModelBackend, reading the signed-in user in plain SQL (sessions signed in under
    # ModelBackend before it are asked to sign in once more).
    "pipes.accounts.AccountBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
GUARDIAN_MONKEY_PATCH_USER = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("pt-br", _("Brazilian Portuguese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "staticfiles"))
if DEBUG:
    # Nothing is collected in development (runserver serves from the finders); an empty
    # folder keeps whitenoise from warning that STATIC_ROOT is missing.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 30 * 1024 * 1024
TRILHO_UPLOAD_MAX_BYTES = envint("TRILHO_UPLOAD_MAX_BYTES", 10 * 1024 * 1024)

# Email: console by default, SMTP when EMAIL_HOST is set.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = envint("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Trilho <no-reply@trilho.local>")
# An SMTP call never hangs a worker: seconds per connection and read. A step's email left "sending"
# for longer than TRILHO_EMAIL_SENDING_STALE_SECONDS lost its worker: marked unknown, never sent again.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30)
TRILHO_EMAIL_SENDING_STALE_SECONDS = envint("TRILHO_EMAIL_SENDING_STALE_SECONDS", 120)
# Beat's last tick older than this is "late" on the rail's health page and for bin/healthcheck.
TRILHO_BEAT_LATE_SECONDS = envint("TRILHO_BEAT_LATE_SECONDS", 180)

# Security: strict when DEBUG is off (manage.py check --deploy is clean).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_ENGINE = "pipes.accounts"  # database sessions, the session row read in plain SQL
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Celery: Redis when CELERY_BROKER_URL (or REDIS_URL) is set; otherwise an on-disk
# transport so tasks still run in a separate worker process, never in the request.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = DATA_DIR / "broker"
    for sub in ("queue", "processed"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker keeps its database connection from task to task: Celery would close it before and after
# every task (a new PostgreSQL session per step) unless this is set; it closes it every that many tasks
# instead, and orchestrator.rail.leases.connections_checked drops a broken or expired one around each.
CELERY_DB_REUSE_MAX = envint("CELERY_DB_REUSE_MAX", 1000)
# Queues: steps and other work on the default queue; beat's sweeps and heartbeat on a queue of their
# own, so a backlog of steps never delays them (orchestrator/celery.py routes them). A worker started
# without -Q consumes them all; a dedicated sweep worker takes `-Q rail-sweep`. Beat's heartbeat rides the
# sweep queue, so /rail/health/ says "late" when nothing consumes it.
# The fast lane (off unless TRILHO_FAST_QUEUE names a queue; docker-compose.yml turns it on): an entry
# whose phase's steps are all automations that call no other system is sent there (orchestrator.rail.
# dispatch), so a burst of model or HTTP steps on the default queue never delays them, and the workers
# that consume only it can run `-P solo` with a higher prefetch (short steps: nothing long waits behind
# a prefetched message). A worker started without -Q consumes it too.
# Emails to people (pipes.mailbox) go to a queue of their own, consumed by every worker started without
# -Q: a worker drains its queues in turn, so an email waits for the next free process, not behind the
# whole backlog of steps on the default queue.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("TRILHO_TASK_QUEUE", "celery")
TRILHO_SWEEP_QUEUE = os.environ.get("TRILHO_SWEEP_QUEUE", "rail-sweep")
TRILHO_FAST_QUEUE = os.environ.get("TRILHO_FAST_QUEUE", "")
TRILHO_MAIL_QUEUE = os.environ.get("TRILHO_MAIL_QUEUE", "mail")
CELERY_TASK_QUEUES = [
    Queue(q, routing_key=q)
    for q in (CELERY_TASK_DEFAULT_QUEUE, TRILHO_SWEEP_QUEUE, TRILHO_MAIL_QUEUE, TRILHO_FAST_QUEUE)
    if q
]
CELERY_TASK_ROUTES = ("orchestrator.celery.task_route",)

# Emails to people (pipes.mailbox) are sent by a worker after the change that wrote them commits,
# never by the web request. Off only where no worker drains the broker (the tests' in-memory one):
# they are then sent in-process, after commit.
TRILHO_MAIL_BY_WORKER = envbool("TRILHO_MAIL_BY_WORKER", not CELERY_BROKER_URL.startswith("memory://"))
# Emails of the outbox are deleted this many days after they were written, once settled: each holds
# personal data (names, addresses, tracking links) and is kept only to tell what went out.
TRILHO_MAIL_KEEP_DAYS = envint("TRILHO_MAIL_KEEP_DAYS", 30)
# How long one run of the sweep goes on sending emails left waiting (it runs beside the rail's sweeps:
# a hung mail server holds it this long and one send's timeout at most).
TRILHO_MAIL_SWEEP_SECONDS = envint("TRILHO_MAIL_SWEEP_SECONDS", 10)

# Models (see agents/). Local models through Ollama; foundation models optional.
OLLAMA_BASE_URL = os.environ.get("OLLAMA_BASE_URL", "http://127.0.0.1:11434")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")

# Money: the default currency of new organizations.
TRILHO_DEFAULT_CURRENCY = os.environ.get("TRILHO_DEFAULT_CURRENCY", "BRL")
TRILHO_HUMAN_COST_PER_MINUTE = Decimal(os.environ.get("TRILHO_HUMAN_COST_PER_MINUTE", "1.50"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # kombu warns "No hostname was supplied" for the embedded filesystem and memory transports.
        "kombu.connection": {"level": "ERROR"},
    },
}

CELERY_BEAT_SCHEDULE = {
    "sweep-phase-entries": {"task": "orchestrator.tasks.sweep_phase_entries", "schedule": 30.0},
    # Entries whose running step lost its worker (a lease that ran out) are sent again within seconds.
    "sweep-stale-leases": {"task": "orchestrator.tasks.sweep_stale_leases", "schedule": 5.0},
    "sweep-webhook-deliveries": {"task": "orchestrator.webhooks.sweep", "schedule": 30.0},
    "escalate-overdue-reviews": {
        "task": "orchestrator.inbox.tasks.escalate_overdue_reviews",
        "schedule": 60.0,
    },
}

# The client's address, for sign-in throttling (per address, beside per account) and the public
# form's rate limit. Without a proxy it is REMOTE_ADDR. Behind a reverse proxy REMOTE_ADDR is the
# proxy's, so every client would share one address: name the header your proxy fills in, e.g.
# "X-Real-IP" (nginx: proxy_set_header X-Real-IP $remote_addr) or "X-Forwarded-For". Set it only
# when every request reaches Trilho through that proxy, or a client could choose its own address.
TRILHO_CLIENT_IP_HEADER = os.environ.get("TRILHO_CLIENT_IP_HEADER", "")
# How many proxies of yours append to that header (a CDN in front of nginx: 2); the client's
# address is that many entries from the right, and entries further left (client-written) are ignored.
TRILHO_TRUSTED_PROXY_COUNT = envint("TRILHO_TRUSTED_PROXY_COUNT", 1)

# A cache shared by every web process when Redis is configured (rate limits must count across workers).
_CACHE_URL = os.environ.get("CACHE_URL") or os.environ.get("REDIS_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}
    if _CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

CELERY_BEAT_SCHEDULE.update(
    {
        "mark-late-cards": {"task": "orchestrator.tasks.mark_late_cards", "schedule": 60.0},
        "apply-retention": {"task": "orchestrator.tasks.apply_retention", "schedule": 24 * 3600.0},
        "seal-timeline": {"task": "orchestrator.tasks.seal_timeline", "schedule": 3600.0},
        "purge-idempotency-keys": {"task": "orchestrator.api.purge_idempotency", "schedule": 24 * 3600.0},
        # A step's emails left behind by a dead worker (rail/outbox.py), and beat's own tick (rail/health.py).
        "sweep-email-outbox": {"task": "orchestrator.tasks.sweep_email_outbox", "schedule": 30.0},
        "beat-heartbeat": {"task": "orchestrator.tasks.beat_heartbeat", "schedule": 30.0},
    }
)

# The rail (orchestrator/, agents/).
TRILHO_MODEL_TIMEOUT_SECONDS = envint("TRILHO_MODEL_TIMEOUT_SECONDS", 60)
# A worker holds a step run for this long and renews the hold every quarter of it while the step runs,
# so a step killed mid-run is claimed again seconds after its last renewal (rail/leases.py).
TRILHO_RAIL_LEASE_SECONDS = envint("TRILHO_RAIL_LEASE_SECONDS", 20)
TRILHO_RAIL_RETRY_BASE_SECONDS = envint("TRILHO_RAIL_RETRY_BASE_SECONDS", 5)
TRILHO_RAIL_RETRY_MAX_SECONDS = envint("TRILHO_RAIL_RETRY_MAX_SECONDS", 300)
TRILHO_AGENT_MAX_DOCUMENT_CHARS = envint("TRILHO_AGENT_MAX_DOCUMENT_CHARS", 20000)
# Text extraction from attachments (on a worker): pages read, seconds, decompressed bytes per stream.
TRILHO_DOCUMENT_MAX_PAGES = envint("TRILHO_DOCUMENT_MAX_PAGES", 50)
TRILHO_DOCUMENT_MAX_SECONDS = envint("TRILHO_DOCUMENT_MAX_SECONDS", 10)
TRILHO_DOCUMENT_MAX_STREAM_BYTES = envint("TRILHO_DOCUMENT_MAX_STREAM_BYTES", 1_000_000)
TRILHO_HTTP_ALLOWED_PRIVATE = envbool("TRILHO_HTTP_ALLOWED_PRIVATE", False)
TRILHO_API_RATE_PER_MINUTE = envint("TRILHO_API_RATE_PER_MINUTE", 120)  # requests per token (or person)
# Secrets for automation HTTP steps, referenced by name: TRILHO_SECRET_ERP_TOKEN=... → "erp_token".
TRILHO_SECRETS = {
    k[len("TRILHO_SECRET_") :].lower(): v for k, v in os.environ.items() if k.startswith("TRILHO_SECRET_")
}
# Costs are recorded and reported in TRILHO_COST_CURRENCY: by default USD, the currency of the
# models' list prices (orchestrator/costs.DEFAULT_PRICING). Local compute and a person's minute are
# priced in it; a model price in another currency is converted at a rate from TRILHO_FX_RATES.
TRILHO_COST_CURRENCY = os.environ.get("TRILHO_COST_CURRENCY", "USD").upper()
TRILHO_FX_RATES = envrates("TRILHO_FX_RATES")
try:
    TRILHO_MODEL_PRICING = {
        k: {
            "input": Decimal(str(v["input"])),
            "output": Decimal(str(v["output"])),
            "currency": str(v.get("currency") or "USD").upper(),
        }
        for k, v in json.loads(os.environ.get("TRILHO_MODEL_PRICING", "{}")).items()
    }  # merged over orchestrator/costs.DEFAULT_PRICING (USD)
except (ValueError, KeyError, TypeError, AttributeError) as exc:
    raise ImproperlyConfigured(
        'TRILHO_MODEL_PRICING must be JSON like {"openai/gpt-4o": {"input": 2.5, "output": 10, "currency": "USD"}}'
    ) from exc
_unconverted = sorted(
    c
    for c in {"USD"} | {v["currency"] for v in TRILHO_MODEL_PRICING.values()}
    if c != TRILHO_COST_CURRENCY
    and (c, TRILHO_COST_CURRENCY) not in TRILHO_FX_RATES
    and (TRILHO_COST_CURRENCY, c) not in TRILHO_FX_RATES
)
if _unconverted:
    raise ImproperlyConfigured(
        f"Model prices are in {', '.join(_unconverted)} but TRILHO_COST_CURRENCY is {TRILHO_COST_CURRENCY}: "
        f'set TRILHO_FX_RATES, e.g. "{_unconverted[0]}:{TRILHO_COST_CURRENCY}=5.42@2026-12-01" (rate and date)'
    )
TRILHO_LOCAL_COMPUTE_COST_PER_1M = Decimal(os.environ.get("TRILHO_LOCAL_COMPUTE_COST_PER_1M", "0.02"))
TRILHO_BASELINE_MODEL = os.environ.get("TRILHO_BASELINE_MODEL", "openai/gpt-4o")
# Timeline seals (pipes/timeline.py, manage.py seal_timeline, hourly on beat): every card's event count and
# head hash with a keyed digest, written where the database cannot rewrite them, so verify_timeline names
# a dropped tail. The key: TRILHO_SEAL_KEY, or one derived from SECRET_KEY. Keep the directory off the
# database host (a mounted volume, a synced bucket) for the seal to mean something.
TRILHO_TIMELINE_SEAL_DIR = os.environ.get("TRILHO_TIMELINE_SEAL_DIR", str(DATA_DIR / "seals"))
TRILHO_SEAL_KEY = os.environ.get("TRILHO_SEAL_KEY", "")
TRILHO_TIMELINE_SEALS_KEPT = envint("TRILHO_TIMELINE_SEALS_KEPT", 48)
# A move while the broker is down or hung must not hang the request: connect and socket timeouts of
# about a second and at most one quick retry; the entry stays in the outbox and the sweep sends it later.
TRILHO_BROKER_TIMEOUT_SECONDS = float(os.environ.get("TRILHO_BROKER_TIMEOUT_SECONDS", "1"))
if CELERY_BROKER_URL.startswith(REDIS_SCHEMES + AMQP_SCHEMES):
    CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(
        CELERY_BROKER_URL, timeout=TRILHO_BROKER_TIMEOUT_SECONDS
    )
CELERY_BROKER_CONNECTION_TIMEOUT = TRILHO_BROKER_TIMEOUT_SECONDS
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
