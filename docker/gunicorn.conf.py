"""gunicorn settings for the web image (``gunicorn -c docker/gunicorn.conf.py teleder.wsgi:application``).

REMOTE_ADDR is the client's address only through the PROXY protocol from PROXY_ALLOW_IPS (the reverse proxy);
``forwarded_allow_ips`` only decides whose X-Forwarded-Proto is believed. Access logs are JSON lines with the
request id, like the application's own logs (TELEDER_LOG_FORMAT=json).
"""

import datetime as dt
import json
import os

from gunicorn.glogging import Logger

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("WEB_THREADS", "2"))
timeout = 60
graceful_timeout = 30
max_requests = 2000
max_requests_jitter = 200
proxy_protocol = "auto"
proxy_allow_ips = os.environ.get("PROXY_ALLOW_IPS", "127.0.0.1")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
control_socket_disable = True
accesslog = "-"
errorlog = "-"


class JsonAccessLogger(Logger):
    """One JSON object per request: the same fields as teleder.logging.JsonFormatter, plus the request's."""

    def access(self, resp, req, environ, request_time) -> None:
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict or self.cfg.syslog):
            return
        status = str(resp.status).split(None, 1)[0]
        headers = {k.lower(): v for k, v in (resp.headers or [])}
        self.access_log.info(
            json.dumps(
                {
                    "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "level": "INFO",
                    "logger": "gunicorn.access",
                    "message": f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')} {status}",
                    "request_id": headers.get("x-request-id", "-"),
                    "client": environ.get("REMOTE_ADDR", "-"),
                    "status": int(status) if status.isdigit() else status,
                    "bytes": getattr(resp, "sent", None),
                    "duration_ms": round(request_time.total_seconds() * 1000, 1),
                    "user_agent": environ.get("HTTP_USER_AGENT", "-")[:200],
                }
            )
        )


logger_class = JsonAccessLogger
