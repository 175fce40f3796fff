#!/usr/bin/env bash
# System packages the test suite drives: headless Chromium (page tests), the PostgreSQL
# server binaries (multi-worker tests), Slurm with munge (a throw-away single-node cluster
# for `launch --slurm`), and a Docker engine with Compose 1.29 and debootstrap (the compose
# stack, on stand-in base images: tests/docker/). Installs what is missing when run as root with apt;
# otherwise says what is missing and leaves it to you (those tests then skip, or fail under CI).
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || missing+=(munge)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get"
  # A failed install is reported, not fatal: the rest of the suite still runs and the tests
  # that need the package say what is missing.
  { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      "${missing[@]}" >/dev/null; } || echo "warning: could not install ${missing[*]}" >&2
else
  echo "note: ${missing[*]} not installed (needs root and apt-get); their tests will skip" >&2
fi
