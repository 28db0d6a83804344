#!/usr/bin/env bash
# Static checks of the deployment files: docker-compose.yml, app.json, Procfile
# and Dockerfile. Needs no image, registry or network. Exits non-zero if any
# check fails. Usage: bash .ci/compose-check.sh   (from anywhere)
set -uo pipefail
cd "$(dirname "$0")/.."

failures=0
ok()   { echo "compose-check: ok:   $*"; }
fail() { echo "compose-check: FAIL: $*" >&2; failures=$((failures + 1)); }
skip() { echo "compose-check: skip: $*"; }

# docker-compose.yml, with whichever Compose is installed. Variables the file
# interpolates are left to their defaults.
compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} -eq 0 ]; then
  skip "docker-compose.yml: neither 'docker compose' nor docker-compose is installed"
elif out=$("${compose[@]}" -f docker-compose.yml config -q 2>&1); then
  ok "docker-compose.yml: '${compose[*]} config -q' accepts it${out:+ ($out)}"
else
  fail "docker-compose.yml: '${compose[*]} config -q' rejects it:"
  echo "$out" >&2
fi

# app.json: valid JSON, and the fields the Deploy button depends on.
if ! command -v python3 >/dev/null 2>&1; then
  fail "app.json: python3 is needed to check it"
elif ! out=$(python3 -m json.tool app.json 2>&1 >/dev/null); then
  fail "app.json: not valid JSON (python3 -m json.tool): $out"
elif out=$(python3 - <<'PY' 2>&1
import json, sys
app = json.load(open("app.json"))
errors = []
for key in ("name", "description", "repository", "buildpacks", "addons", "env", "formation"):
    if key not in app:
        errors.append("missing %r" % key)
if {"url": "heroku/go"} not in app.get("buildpacks", []):
    errors.append("buildpacks lacks heroku/go")
if not any(str(a.get("plan", a) if isinstance(a, dict) else a).startswith("heroku-redis")
           for a in app.get("addons", [])):
    errors.append("no heroku-redis add-on")
for name, spec in app.get("env", {}).items():
    if not isinstance(spec, dict) or not spec.get("description"):
        errors.append("env %s has no description" % name)
        continue
    if "value" in spec and not isinstance(spec["value"], str):
        errors.append("env %s: value must be a string" % name)
    if "value" not in spec and "generator" not in spec and spec.get("required", True):
        errors.append("env %s is required but has no value or generator" % name)
if app.get("env", {}).get("SECRET_KEY", {}).get("generator") != "secret":
    errors.append("SECRET_KEY must use the secret generator")
if "web" not in app.get("formation", {}):
    errors.append("formation has no web process")
if errors:
    print("; ".join(errors))
    sys.exit(1)
PY
); then
  ok "app.json: valid JSON with name, buildpack heroku/go, a heroku-redis add-on, described env, web formation"
else
  fail "app.json: $out"
fi

# Procfile: one web process, the binary the Go buildpack installs as bin/floodgate.
if [ "$(cat Procfile 2>/dev/null)" = "web: bin/floodgate" ]; then
  ok "Procfile: 'web: bin/floodgate'"
else
  fail "Procfile: expected exactly 'web: bin/floodgate', found '$(cat Procfile 2>/dev/null)'"
fi

# Dockerfile: must stay buildable by the classic builder (Docker 20.10 here).
if [ ! -f Dockerfile ]; then
  fail "Dockerfile: missing"
elif grep -nE '^[[:space:]]*RUN[[:space:]]+--mount|<<[A-Za-z]' Dockerfile >&2; then
  fail "Dockerfile: uses BuildKit-only syntax (RUN --mount or a heredoc) the classic builder rejects"
elif ! grep -qE '^USER[[:space:]]+[0-9]+' Dockerfile; then
  fail "Dockerfile: the final stage must run as a numeric non-root USER"
else
  ok "Dockerfile: no BuildKit-only syntax, numeric non-root USER"
fi

if [ "$failures" -ne 0 ]; then
  echo "compose-check: $failures check(s) failed" >&2
  exit 1
fi
echo "compose-check: all deployment checks passed"
