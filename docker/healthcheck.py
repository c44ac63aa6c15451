"""Container health check for the web image: GET /healthz (or the path given) on the local gunicorn.

Uses only the standard library (the slim image has no curl) and the first of DJANGO_ALLOWED_HOSTS as Host.
"""

import http.client
import os
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
host = (os.environ.get("DJANGO_ALLOWED_HOSTS") or "localhost").split(",")[0].strip() or "localhost"
try:
    connection = http.client.HTTPConnection("127.0.0.1", int(os.environ.get("PORT", "8000")), timeout=4)
    connection.request("GET", path, headers={"Host": host, "X-Forwarded-Proto": "https"})
    status = connection.getresponse().status
except OSError as exc:
    print(f"unhealthy: {exc}")
    sys.exit(1)
print(f"{path}: HTTP {status}")
sys.exit(0 if status == 200 else 1)
