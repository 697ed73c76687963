"""Settings for Autonomy Gate, read from the environment (see ../shared/docs/contract.md §1).

With neither DATABASE_URL nor REDIS_URL set, the gate runs embedded: SQLite, Celery tasks
executed in-process once their transaction commits, and the in-memory channel layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if env_bool("DJANGO_SECURE"):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_SECURE=1")
    # Only the plain-http demo and the tests get here; production sets DJANGO_SECRET_KEY.
    SECRET_KEY = "insecure-embedded-default-" + "x" * 40

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "channels",
    "csp",
    "approvals",
]

MIDDLEWARE = [
    # A fresh log context per request and one log line per answered request.
    "approvals.ops.logging.RequestLogMiddleware",
    # /healthz, /readyz, /metrics: answered before the Host check and the HTTPS redirect.
    "approvals.ops.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "approvals.ops.middleware.BodySizeLimitMiddleware",
    "approvals.ops.middleware.QueryStringNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "approvals.ops.middleware.DatabaseUnavailableMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Only the app's own assets: no inline script or style, no CDN. Agent-sent text is escaped by the
# templates; this is the second wall.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "escalation_app.urls"
WSGI_APPLICATION = "escalation_app.wsgi.application"
ASGI_APPLICATION = "escalation_app.asgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
EMBEDDED = not DATABASE_URL
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)
    if _db["ENGINE"] == "django.db.backends.postgresql" and env_bool("GATE_DB_POOL", default=True):
        # On by default: a bounded pool instead of a connection per request (or persistent
        # per-thread connections, which under ASGI, a thread per request, exhaust PostgreSQL's).
        # The README's server ingests ~1.7x faster with it (bench/results/report.md). GATE_DB_POOL=0
        # turns it off (then GATE_CONN_MAX_AGE applies).
        _db["CONN_MAX_AGE"] = 0
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 2,
            "max_size": env_int("GATE_DB_POOL_MAX", 20),
            "timeout": 10,
        }
    else:
        _db["CONN_MAX_AGE"] = env_int("GATE_CONN_MAX_AGE", 0)
    if _db["ENGINE"] == "django.db.backends.postgresql" and env_bool("GATE_DB_SERVER_SIDE_BINDING", default=False):
        # Parameters bound by the server: psycopg prepares a statement a connection has run
        # prepare_threshold (5) times, so the worker's repeated statements skip parsing and planning.
        # (Django leaves psycopg's prepare_threshold off unless OPTIONS names it.)
        _db.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
    DATABASES = {"default": _db}
else:
    SQLITE_PATH = Path(os.environ.get("GATE_SQLITE_PATH", str(BASE_DIR / "var" / "gate.sqlite3")))
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, channel layer, cache ----------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")

if REDIS_URL:
    # Bounded waits: a Redis that is down or hung must cost a request a second or two, never hang it.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("GATE_CHANNEL_PREFIX", "asgi")},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery -----------------------------------------------------------------------------------
# Read by escalation_app/celery.py with namespace "CELERY".
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# One (disabled, stateless) result backend for the process instead of one per thread: under ASGI
# every request runs in a thread of its own, and Celery looked the backend up again for each one, a
# scan of every installed package's entry points on every .delay(): ~45% of an ASGI web process's
# CPU under load, and a third of the ingest rate of the README's server (bench/results/report.md).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
# Redelivery after a worker dies: acknowledge only once a task finished, and give an unacked task
# back to another worker after a bound fitted to evaluation (seconds), not Redis' one hour.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 20
CELERY_TASK_TIME_LIMIT = 30
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("GATE_VISIBILITY_TIMEOUT", 120),
    # A broker that is down or hung fails a publish within seconds instead of hanging the request
    # that queues it; the action is stored and the sweeper queues it again (tests/test_faults.py).
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("GATE_QUEUE_PREFIX", "") + "gate"
# Evaluation and webhook deliveries on separate queues, so that a slow receiver never delays a
# decision; both are declared, so a plain `celery -A escalation_app worker` consumes both.
GATE_WEBHOOK_QUEUE = os.environ.get("GATE_QUEUE_PREFIX", "") + "gate-webhooks"
CELERY_TASK_QUEUES = [Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(GATE_WEBHOOK_QUEUE)]
# Outgoing network calls (webhooks, e-mail and Slack notifications) wait on others' servers: a queue
# of their own, so that they never delay an evaluation.
CELERY_TASK_ROUTES = {
    "approvals.tasks.deliver_webhook": {"queue": GATE_WEBHOOK_QUEUE},
    "approvals.notifications.tasks.*": {"queue": GATE_WEBHOOK_QUEUE},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the DB connection after every task unless told to reuse it.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_BEAT_SCHEDULE = {
    "sweep-pending": {
        "task": "approvals.tasks.sweep_pending_actions",
        "schedule": float(env_int("GATE_SWEEP_INTERVAL_SECONDS", 15)),
    },
    "enforce-deadlines": {
        "task": "approvals.tasks.enforce_deadlines",
        "schedule": float(env_int("GATE_DEADLINE_INTERVAL_SECONDS", 15)),
    },
    "sweep-outbox": {
        "task": "approvals.lifecycle.tasks.sweep_outbox",
        "schedule": float(env_int("GATE_SWEEP_INTERVAL_SECONDS", 15)),
    },
}

# --- Gate ---------------------------------------------------------------------------------------
GATE_MAX_BODY_BYTES = env_int("GATE_MAX_BODY_BYTES", 1024 * 1024)
# Bounds on what an agent sends (400 beyond them). tau-bench airline, for scale: at most 62 steps,
# nesting 8 deep, strings of 6,761 characters (approvals/api/parsers.py, serializers.py).
GATE_MAX_TRAJECTORY_STEPS = env_int("GATE_MAX_TRAJECTORY_STEPS", 1000)
GATE_MAX_JSON_DEPTH = env_int("GATE_MAX_JSON_DEPTH", 64)
GATE_MAX_STRING_LENGTH = env_int("GATE_MAX_STRING_LENGTH", 65536)
# Wall-clock budget of one action's rules; past it the rest are errors and the action is held.
GATE_EVALUATION_BUDGET_MS = env_int("GATE_EVALUATION_BUDGET_MS", 500)
# The safety net of policy changes (contract §6.2, approvals/evaluation/safety_net.py): how many of
# each changed type's most recent labelled actions are replayed under the new policy before it goes
# live (a change that would newly auto-approve one labelled unsafe is refused unless accepted; a shadow
# import reports what it would newly auto-approve among them).
# 0 replays none.
GATE_SAFETY_NET_RECENT = env_int("GATE_SAFETY_NET_RECENT", 500)
# Rule insight (the evaluation page, `manage.py evaluate`) reads this many of the most recent labelled
# actions of a type.
GATE_RULE_INSIGHT_RECENT = env_int("GATE_RULE_INSIGHT_RECENT", 500)
if GATE_RULE_INSIGHT_RECENT < 1:
    raise ImproperlyConfigured(f"GATE_RULE_INSIGHT_RECENT must be at least 1, got {GATE_RULE_INSIGHT_RECENT}")
GATE_WEBHOOK_ALLOW_PRIVATE = env_bool("GATE_WEBHOOK_ALLOW_PRIVATE")
# Hosts that may be called even when they resolve to a private address (comma-separated).
GATE_WEBHOOK_ALLOWED_HOSTS = [h for h in os.environ.get("GATE_WEBHOOK_ALLOWED_HOSTS", "").split(",") if h.strip()]
# Lookups (contract §6.1): the same address guard as webhooks, with settings of their own; an
# answer larger than GATE_LOOKUP_MAX_BYTES is an error (the action is held).
GATE_LOOKUP_ALLOW_PRIVATE = env_bool("GATE_LOOKUP_ALLOW_PRIVATE")
GATE_LOOKUP_ALLOWED_HOSTS = [h for h in os.environ.get("GATE_LOOKUP_ALLOWED_HOSTS", "").split(",") if h.strip()]
GATE_LOOKUP_MAX_BYTES = env_int("GATE_LOOKUP_MAX_BYTES", 1024 * 1024)
GATE_WEBHOOK_MAX_ATTEMPTS = env_int("GATE_WEBHOOK_MAX_ATTEMPTS", 8)
GATE_WEBHOOK_BACKOFF_SECONDS = env_int("GATE_WEBHOOK_BACKOFF_SECONDS", 2)

# --- Notifications of held actions (contract §6.3; approvals/notifications) --------------------
# Django's e-mail settings, read from environment variables of the same names.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "autonomy-gate@localhost")
# The absolute base of the links in e-mails and Slack messages (the desk: <base>/review/<id>).
GATE_PUBLIC_URL = os.environ.get("GATE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Slack: held actions posted to an incoming webhook, or (with a bot token) by chat.postMessage to
# GATE_SLACK_CHANNEL, so that decisions made anywhere can update the message (chat.update).
GATE_SLACK_WEBHOOK_URL = os.environ.get("GATE_SLACK_WEBHOOK_URL", "")
GATE_SLACK_SIGNING_SECRET = os.environ.get("GATE_SLACK_SIGNING_SECRET", "")
GATE_SLACK_BOT_TOKEN = os.environ.get("GATE_SLACK_BOT_TOKEN", "")
GATE_SLACK_CHANNEL = os.environ.get("GATE_SLACK_CHANNEL", "")
GATE_SLACK_API_URL = os.environ.get("GATE_SLACK_API_URL", "https://slack.com/api").rstrip("/")
# A notification that keeps failing (SMTP down, Slack answering 5xx) is retried with exponential
# backoff this many times in all, then marked failed; it never affects the action.
GATE_NOTIFY_MAX_ATTEMPTS = env_int("GATE_NOTIFY_MAX_ATTEMPTS", 6)
GATE_NOTIFY_BACKOFF_SECONDS = env_int("GATE_NOTIFY_BACKOFF_SECONDS", 5)
# An evaluation is tried this many times (crashes and kills included) before the action is held.
GATE_MAX_EVALUATION_ATTEMPTS = env_int("GATE_MAX_EVALUATION_ATTEMPTS", 3)
# An action still pending after this many seconds is re-queued by the sweeper.
GATE_PENDING_SWEEP_AFTER_SECONDS = env_int("GATE_PENDING_SWEEP_AFTER_SECONDS", 30)
# The outbox sweep announces changes left unannounced for longer than this (a process died between
# its commit and its dispatch), and forgets announced rows after GATE_OUTBOX_KEEP_HOURS.
GATE_OUTBOX_SWEEP_AFTER_SECONDS = env_int("GATE_OUTBOX_SWEEP_AFTER_SECONDS", 10)
GATE_OUTBOX_KEEP_HOURS = env_int("GATE_OUTBOX_KEEP_HOURS", 24)
GATE_MAX_WAIT_SECONDS = 30
# Requests per agent per minute across all web processes (counted in Redis); 0 turns it off. An
# agent's own Agent.rate_limit_per_minute, when set, wins. Over it: 429 with Retry-After.
GATE_AGENT_RATE_PER_MINUTE = env_int("GATE_AGENT_RATE_PER_MINUTE", 1200)
# How long an agent's previous token keeps working after a rotation, unless the rotation says.
GATE_TOKEN_ROTATION_GRACE_MINUTES = env_int("GATE_TOKEN_ROTATION_GRACE_MINUTES", 60)
# The MCP gateway (contract §6.4; approvals.mcp): how long a held tools/call waits for a reviewer
# before it answers with the review URL, and how long an upstream server has to answer.
GATE_MCP_HOLD_SECONDS = env_int("GATE_MCP_HOLD_SECONDS", 20)
GATE_MCP_UPSTREAM_TIMEOUT_SECONDS = env_int("GATE_MCP_UPSTREAM_TIMEOUT_SECONDS", 30)
# Where the gateway keeps its sessions in Redis (so that any web process serves any session), and
# how long an idle session is kept.
GATE_MCP_REDIS_PREFIX = os.environ.get("GATE_QUEUE_PREFIX", "") + "gate:mcp:"
GATE_MCP_SESSION_IDLE_SECONDS = env_int("GATE_MCP_SESSION_IDLE_SECONDS", 24 * 3600)

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "approvals.api.authentication.AgentTokenAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["approvals.api.throttling.AgentRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["approvals.api.parsers.StrictJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "approvals.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Autonomy Gate API",
    "DESCRIPTION": "Agents propose actions; policies decide or hold them for a human.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Every operation documents its 4xx answers and their JSON body; the proposal's bounds and
    # rules; links between the action operations (approvals/api/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "approvals.api.schema.document_errors",
        "approvals.api.schema.document_proposal",
        "approvals.api.schema.document_links",
    ],
}

# --- Auth, i18n, static -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/review/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("GATE_STATIC_ROOT", str(BASE_DIR / "var" / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing one on every start
WHITENOISE_USE_FINDERS = True

# --- HTTPS hardening (contract §1) ----------------------------------------------------------------
# Always: no script reads either cookie (forms carry the CSRF token), and neither goes out on a
# cross-site subrequest.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if env_bool("DJANGO_SECURE"):
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Observability (approvals/ops/: metrics.py, health.py, logging.py) -----------------------------
# /metrics is open (Prometheus' usual internal network) unless a token is set; then it needs
# `Authorization: Bearer <GATE_METRICS_TOKEN>`.
GATE_METRICS_TOKEN = os.environ.get("GATE_METRICS_TOKEN", "")
# Each process reuses its database figures this long (several scrapers, the ops page's viewers).
GATE_METRICS_CACHE_SECONDS = env_int("GATE_METRICS_CACHE_SECONDS", 5)
GATE_OBS_REDIS_PREFIX = os.environ.get("GATE_QUEUE_PREFIX", "") + "gate:obs:"
GATE_WORKER_HEARTBEAT_SECONDS = env_int("GATE_WORKER_HEARTBEAT_SECONDS", 10)
# /readyz wants a worker heartbeat at most this old.
GATE_WORKER_HEARTBEAT_MAX_AGE = env_int("GATE_WORKER_HEARTBEAT_MAX_AGE", 30)
# json: one object a line, with action_id and agent on the lines about an action (servers and
# workers); plain: for people (the embedded demo; the tests set it).
GATE_LOG_FORMAT = os.environ.get("GATE_LOG_FORMAT", "plain" if EMBEDDED else "json")
if GATE_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"GATE_LOG_FORMAT must be json or plain, got {GATE_LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "approvals.ops.logging.PlainFormatter"},
        "json": {"()": "approvals.ops.logging.JsonFormatter"},
    },
    "filters": {"action_context": {"()": "approvals.ops.logging.ActionContextFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": GATE_LOG_FORMAT, "filters": ["action_context"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("GATE_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # uvicorn's own lines in the same format; its access log repeats approvals.requests (and
        # would print query strings), so it is off.
        "uvicorn": {"handlers": ["console"], "propagate": False},
        "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        # Django's own request warnings duplicate approvals.requests' lines for 4xx.
        "django.request": {"level": "ERROR"},
    },
}
