#!/usr/bin/env bash
# Starts provider.mjs COUNT times in a row (default 50) on a free port with the
# pinned Node 22 (node_modules/.bin/node), waits for its issuer line, stops it,
# and reports the start times. Exits non-zero if a start takes longer than
# START_LIMIT seconds (default 10), never announces itself, or does not stop
# cleanly on SIGTERM.
#
#   tests/oidc/start-loop.sh        # 50 starts
#   tests/oidc/start-loop.sh 200
set -euo pipefail
cd "$(dirname "$0")"

NODE=node_modules/.bin/node
COUNT=${1:-50}
LIMIT=${START_LIMIT:-10}
GIVE_UP=60 # a start still silent by then has failed
if [ ! -x "$NODE" ]; then
  echo "tests/oidc/$NODE is missing: run scripts/setup (npm ci in tests/oidc)" >&2
  exit 1
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
mkfifo "$tmp/stdout"

now_us() { echo "${EPOCHREALTIME//[^0-9]/}"; }

echo "$COUNT starts of provider.mjs with $("$NODE" --version), limit ${LIMIT}s"
times=()
slow=0 failed=0 unclean=0 slowest=0 slowest_at=0
for i in $(seq 1 "$COUNT"); do
  log="$tmp/start-$i.log"
  t0=$(now_us)
  "$NODE" provider.mjs --port 0 >"$tmp/stdout" 2>"$log" &
  pid=$!
  exec 3<"$tmp/stdout"
  line=""
  read -r -t "$GIVE_UP" line <&3 || true
  ms=$((($(now_us) - t0) / 1000))
  if [[ $line != issuer=http://127.0.0.1:* ]]; then
    failed=$((failed + 1))
    echo "start $i: no issuer line after ${ms} ms; its log:" >&2
    sed 's/^/  /' "$log" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    exec 3<&-
    pid=""
    continue
  fi
  kill -TERM "$pid"
  code=0
  wait "$pid" || code=$?
  exec 3<&-
  pid=""
  if [ "$code" != 0 ]; then
    unclean=$((unclean + 1))
    echo "start $i: exited $code on SIGTERM; its log:" >&2
    sed 's/^/  /' "$log" >&2
  fi
  times+=("$ms")
  if [ "$ms" -gt $((LIMIT * 1000)) ]; then
    slow=$((slow + 1))
    echo "start $i: ${ms} ms (over ${LIMIT}s)" >&2
  fi
  if [ "$ms" -gt "$slowest" ]; then
    slowest=$ms slowest_at=$i
  fi
done

ready=${#times[@]}
median=-
if [ "$ready" -gt 0 ]; then
  mapfile -t sorted < <(printf '%s\n' "${times[@]}" | sort -n)
  median=$(((sorted[(ready - 1) / 2] + sorted[ready / 2]) / 2))
fi
echo "started $ready/$COUNT; over ${LIMIT}s: $slow; no issuer line (exited, or silent for ${GIVE_UP}s): $failed; unclean stops: $unclean"
echo "start time: median ${median} ms, slowest ${slowest} ms (start $slowest_at)"
[ "$slow" = 0 ] && [ "$failed" = 0 ] && [ "$unclean" = 0 ]
