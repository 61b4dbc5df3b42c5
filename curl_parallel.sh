#!/usr/bin/env bash
# Usage: ./curl_parallel.sh N URL
# Fires N parallel `GET URL?endTimestamp=<now - 10*i>` (i = 0..N-1, integer
# seconds), waits for every one to finish (each has a time limit, so this never
# hangs) and prints each one's status line and body, errors included.
# Exits 0 when every call answered 200.
set -uo pipefail
if [ $# -ne 2 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 N URL   e.g. $0 10 http://localhost:8080/logs" >&2
    exit 2
fi
count=$1
url=$2
max_time=${CURL_MAX_TIME:-60}   # above the server's worst case (connect + response + 1 s)
separator='?'
[[ "$url" == *\?* ]] && separator='&'
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

now=$(date +%s)
for ((i = 0; i < count; i++)); do
    end=$((now - 10 * i))
    curl --silent --show-error --max-time "$max_time" \
        --output "$workdir/$i.body" --write-out '%{http_code}' \
        "${url}${separator}endTimestamp=${end}" >"$workdir/$i.status" 2>"$workdir/$i.error" &
done
wait

failures=0
for ((i = 0; i < count; i++)); do
    end=$((now - 10 * i))
    status=$(cat "$workdir/$i.status" 2>/dev/null)
    [ "$status" = "200" ] || failures=$((failures + 1))
    echo "[$i] endTimestamp=$end -> HTTP ${status:-none}"
    [ -s "$workdir/$i.body" ] && { cat "$workdir/$i.body"; echo; }
    [ -s "$workdir/$i.error" ] && cat "$workdir/$i.error"
done
echo "$((count - failures)) of $count answered 200"
[ "$failures" -eq 0 ]
