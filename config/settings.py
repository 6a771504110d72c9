"""Settings for every School Sync process, read from the environment (see README)."""

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# --- Core -------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is false.")
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "accounts",
    "schools",
    "sync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -----------------------------------------------------------------
# PostgreSQL (psycopg 3) in production through DATABASE_URL; a SQLite file under var/
# otherwise. SQLite runs in WAL mode with IMMEDIATE transactions so that concurrent
# writers queue for the write lock up front instead of failing halfway through.

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", default=60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so that worker processes started by the tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache -------------------------------------------------------------------------
# Shared by every process (throttle counters, the external system's health): Redis in
# production, a directory under var/ by default.

CACHE_URL = env_str("DJANGO_CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif not CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
else:
    raise ImproperlyConfigured("DJANGO_CACHE_URL must be redis://…, rediss://… or locmem://.")

# --- Auth, i18n, static ------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Object permissions (django-rules, registered in schools.access) narrow the model
# permissions to the records of a user's schools.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out account or address
    "django.contrib.auth.backends.ModelBackend",
    "rules.permissions.ObjectPermissionBackend",
]
LOGIN_URL = "admin:login"  # also for /api/docs/; the browsable API has its own sign-in only with DEBUG

# Admin sessions last a working day from sign-in: use does not extend them, and closing the
# browser ends them sooner.
ADMIN_SESSION_HOURS = 8
SESSION_COOKIE_AGE = ADMIN_SESSION_HOURS * 60 * 60
SESSION_SAVE_EVERY_REQUEST = False
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# API tokens (knox) are stored hashed and expire API_TOKEN_TTL_HOURS after sign-in; a password
# change revokes them (accounts.tokens).
API_TOKEN_TTL_HOURS = env_int("API_TOKEN_TTL_HOURS", 10)
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}

# Lockout (django-axes) on every sign-in: the admin, the token endpoint, the browsable API.
# LOGIN_FAILURE_LIMIT failures lock the account whatever the address, and the address whatever
# the account, until LOGIN_LOCKOUT_MINUTES after the last counted failure; attempts while locked
# do not extend it, and a successful sign-in clears the count. The address is the one the API's
# throttles use (API_NUM_PROXIES).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15)
if min(API_TOKEN_TTL_HOURS, LOGIN_FAILURE_LIMIT, LOGIN_LOCKOUT_MINUTES) < 1:
    raise ImproperlyConfigured("API_TOKEN_TTL_HOURS, LOGIN_FAILURE_LIMIT and LOGIN_LOCKOUT_MINUTES must be at least 1.")
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_VERBOSE = False  # no banner at every start; lockouts are still logged
# Failures are recorded for the lockout; successful sign-ins are not (that log would open a
# session for every token sign-in). Django keeps each user's last_login.
AXES_DISABLE_ACCESS_LOG = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security -------------------------------------------------------------------
# Behind a TLS terminator, plain HTTP is redirected and cookies are HTTPS-only.

SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = SECURE_SSL_REDIRECT
CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365 if SECURE_SSL_REDIRECT else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_SSL_REDIRECT
SECURE_HSTS_PRELOAD = SECURE_SSL_REDIRECT
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
X_FRAME_OPTIONS = "DENY"

# --- REST API -------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.tokens.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Reads need the model's view permission, writes its add/change/delete permission;
    # school records are further narrowed to the user's schools (schools.access).
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "config.permissions.ModelPermissions",
    ],
    # JSON only; the browsable API (HTML pages and forms for every record) with DEBUG.
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "config.inputs.FilterBackend",
        "config.inputs.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "config.inputs.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "config.api.StandardPagination",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "60/minute"),
        "user": env_str("API_THROTTLE_USER", "6000/minute"),
        "auth": env_str("API_THROTTLE_AUTH", "20/minute"),
    },
    # Proxies in front of the app that append to X-Forwarded-For; 0 trusts only the socket's
    # address, so clients cannot pick their own throttle key.
    "NUM_PROXIES": env_int("API_NUM_PROXIES", default=0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "School Sync API",
    "DESCRIPTION": (
        "School records (schools, grades, classes, teachers, students) and the ordered "
        "operation log that mirrors every change to the external system."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.document_errors",
    ],
}

# --- Celery -----------------------------------------------------------------------
# RabbitMQ or Redis in production; by default the kombu filesystem transport under var/.
# Delivery state lives in the database, so the broker only carries wake-up calls and
# chain links: a lost message delays a push (the sweep re-kicks), never loses it.

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
# A publish makes one connection attempt instead of retrying for the whole connect
# timeout: a web request's kick must not wait on a broker that is down (I6). Workers
# reconnect with their own retry loop; their publishes retry through Celery's policy.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"max_retries": 0}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # its exchange table; by default ./control
        "store_processed": False,
        # The transport polls its folder; each chain link waits for a poll, so poll often.
        "polling_interval": 0.05,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = None  # no result backend, so no nightly backend_cleanup job
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue("default"), Queue("sync")]
CELERY_TASK_ROUTES = {"sync.dispatch": {"queue": "sync"}, "sync.push": {"queue": "sync"}}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Django fixup closes the database connection around every task unless this is
# set; config/celery.py applies Django's own rules (CONN_MAX_AGE, health checks) instead.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TIMEZONE = TIME_ZONE

# --- External system -----------------------------------------------------------------

SYNC_API_URL = env_str("SYNC_API_URL", "http://127.0.0.1:8001")
# Children's records go to the external system: outside development, only over HTTPS unless
# it is on this host, or the operator says otherwise (a private network, a TLS sidecar).
SYNC_API_ALLOW_HTTP = env_bool("SYNC_API_ALLOW_HTTP", default=False)
if not DEBUG and not SYNC_API_ALLOW_HTTP:
    _sync_api = urlsplit(SYNC_API_URL)
    if _sync_api.scheme != "https" and _sync_api.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ImproperlyConfigured(
            f"SYNC_API_URL {SYNC_API_URL} is plain HTTP to another host; use https://, "
            "or set SYNC_API_ALLOW_HTTP=true if the network is private."
        )
SYNC_API_TOKEN = env_str("SYNC_API_TOKEN")
SYNC_HTTP_TIMEOUT = env_float("SYNC_HTTP_TIMEOUT", 30.0)
# A chain link starts no further push after this long, so a link (and a worker's shutdown)
# ends within this plus one HTTP timeout (I7).
SYNC_RUN_SECONDS = 2.0
# How long a dispatcher chain owns a lane without renewing. A live chain renews it every
# third of this, also while a call is in flight, so a dead worker's lane is free again
# within this long (a restarted worker frees its predecessor's at once).
SYNC_LEASE_SECONDS = env_float("SYNC_LEASE_SECONDS", 6.0)
MIN_LEASE_SECONDS = 3.0
if SYNC_LEASE_SECONDS < MIN_LEASE_SECONDS:
    raise ImproperlyConfigured(f"SYNC_LEASE_SECONDS must be at least {MIN_LEASE_SECONDS:g}.")
# Backoff after a transient failure: exponential from the base, capped, with jitter.
SYNC_RETRY_BASE_SECONDS = env_float("SYNC_RETRY_BASE_SECONDS", 1.0)
SYNC_RETRY_MAX_SECONDS = env_float("SYNC_RETRY_MAX_SECONDS", 300.0)
# After a permanent failure: "block" the lane until an operator retries or cancels the
# entry (order first), or "skip" it and go on with the next entry.
SYNC_ON_PERMANENT_FAILURE = env_str("SYNC_ON_PERMANENT_FAILURE", "block")
if SYNC_ON_PERMANENT_FAILURE not in {"block", "skip"}:
    raise ImproperlyConfigured("SYNC_ON_PERMANENT_FAILURE must be block or skip.")
# "global": one lane, total commit order. "school": one lane per school, delivered in
# parallel; a change that involves two schools holds a slot in both lanes.
SYNC_LANES = env_str("SYNC_LANES", "global")
if SYNC_LANES not in {"global", "school"}:
    raise ImproperlyConfigured("SYNC_LANES must be global or school.")
# External calls in flight across all lanes; 0: no cap beyond the sync workers' slots.
SYNC_MAX_IN_FLIGHT = env_int("SYNC_MAX_IN_FLIGHT", 0)
if SYNC_MAX_IN_FLIGHT < 0:
    raise ImproperlyConfigured("SYNC_MAX_IN_FLIGHT must be 0 (no cap) or more.")
# How far ahead a change may be scheduled.
SCHEDULED_CHANGES_HORIZON_DAYS = env_int("SCHEDULED_CHANGES_HORIZON_DAYS", 365)
# How many changes one user may schedule a minute, and have waiting to run.
SCHEDULED_CHANGES_PER_MINUTE = env_int("SCHEDULED_CHANGES_PER_MINUTE", 2000)
SCHEDULED_CHANGES_MAX_PENDING = env_int("SCHEDULED_CHANGES_MAX_PENDING", 20000)
# Succeeded and cancelled entries (and their attempts) are purged this many days after
# they were closed; pending, in-progress and failed entries are never purged.
SYNC_RETENTION_DAYS = env_int("SYNC_RETENTION_DAYS", 30)
# Path probed by the health job; any answer below 500 counts as reachable.
SYNC_HEALTH_PATH = env_str("SYNC_HEALTH_PATH", "/health")
# Bearer token that may read /metrics (staff sessions may too); empty: staff only.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Logging -------------------------------------------------------------------

LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "config.logs.OneLineFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # sync.dispatcher logs every push with its sequence, key and outcome; httpx's own
        # line per request would only repeat it.
        "httpx": {"level": "WARNING"},
    },
}
