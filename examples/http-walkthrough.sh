#!/usr/bin/env bash
# A walk through the HTTP API with curl: an admin creates an event, it sells out, two people join its
# waitlist, a booking is cancelled, the first in line lets the offer run out, the second accepts it,
# and the e-mails land. `scripts/test` runs it against the README's server.
#
# Start a server with an administrator and a short offer lifetime, then run this from another shell:
#
#   EVENTLY_ADMIN_EMAIL=admin@example.com EVENTLY_ADMIN_PASSWORD='change me please' \
#   EVENTLY_OFFER_TTL_SECS=3 EVENTLY_WORKER_POLL_MS=200 EVENTLY_MAIL_DIR=evently-mail \
#       cargo run -p evently-http --bin evently -- serve
#
#   EVENTLY_ADMIN_EMAIL=admin@example.com EVENTLY_ADMIN_PASSWORD='change me please' \
#   EVENTLY_MAIL_DIR=evently-mail examples/http-walkthrough.sh
#
# Needs curl and python3 (to read JSON). EVENTLY_URL names the server (default
# http://127.0.0.1:8080); with EVENTLY_MAIL_DIR set (the server's file transport) it also waits for
# the e-mails. Exits non-zero at the first answer that is not the one expected.
set -euo pipefail

base="${EVENTLY_URL:-http://127.0.0.1:8080}"
admin_email="${EVENTLY_ADMIN_EMAIL:?set EVENTLY_ADMIN_EMAIL to the e-mail of the server administrator}"
admin_password="${EVENTLY_ADMIN_PASSWORD:?set EVENTLY_ADMIN_PASSWORD}"
mail_dir="${EVENTLY_MAIL_DIR:-}"
# How long to wait for the worker (offer expiry, e-mails), in seconds.
patience=60
# People of this run get addresses of their own, so the walk-through can run again on one database.
run="$(date +%s)-$$"

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'walk-through FAILED: %s\n' "$*" >&2
    exit 1
}

# call METHOD PATH [TOKEN] [JSON] [EXTRA CURL ARGUMENTS...]: prints the body; the status goes to
# $status.
body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT
call() {
    local method=$1 path=$2 token=${3:-} json=${4:-}
    shift $(($# < 4 ? $# : 4))
    local args=(-s -o "$body_file" -w '%{http_code}' -X "$method" "$base$path")
    [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
    [[ -n $json ]] && args+=(-H 'Content-Type: application/json' -d "$json")
    status=$(curl "${args[@]}" "$@") || die "$method $path: no answer from $base"
    cat "$body_file"
}
# expect STATUS: the last call must have answered STATUS.
expect() {
    [[ $status == "$1" ]] || die "expected HTTP $1, got $status: $(cat "$body_file")"
    echo "HTTP $status"
}
# field EXPRESSION: a value of the last answer's JSON, e.g. field '["items"][0]["id"]'.
field() {
    python3 -c "import json, sys; v = json.load(open(sys.argv[1]))$1; print(v if v is not None else '')" \
        "$body_file"
}

login() {
    call POST /auth/login "" "{\"email\":\"$1\",\"password\":\"$2\"}" >/dev/null
    expect 200 >/dev/null
    field '["access_token"]'
}
person() {
    local email="$1-$run@example.com"
    call POST /auth/register "" "{\"email\":\"$email\",\"name\":\"$1\",\"password\":\"password-of-$1\"}" >/dev/null
    expect 201 >/dev/null
    login "$email" "password-of-$1"
}

step "The admin logs in and creates an event with one seat"
admin=$(login "$admin_email" "$admin_password")
call POST /events "$admin" '{"name":"Walk-through gig","venue":"The Cellar","category":"music",
    "starts_at":"2099-06-01T20:00:00Z","ends_at":"2099-06-01T23:00:00Z","capacity":1,
    "price":{"minor":2500,"currency":"EUR"}}' >/dev/null
expect 201
event=$(field '["id"]')
echo "event $event"

step "Alice, Bob and Carol register"
alice=$(person alice)
bob=$(person bob)
carol=$(person carol)

step "Alice books the seat (safe to retry: Idempotency-Key)"
call POST "/events/$event/bookings" "$alice" '{"quantity":1}' -H "Idempotency-Key: walk-$run" >/dev/null
expect 201
sold=$(field '["id"]')
call POST "/events/$event/bookings" "$alice" '{"quantity":1}' -H "Idempotency-Key: walk-$run" >/dev/null
expect 200
[[ $(field '["id"]') == "$sold" ]] || die "the retry made another booking"
call GET "/bookings/$sold/tickets" "$alice" >/dev/null
expect 200
echo "ticket $(field '["items"][0]["number"]')"

step "Bob is too late: sold out, so he and Carol join the waitlist"
call POST "/events/$event/bookings" "$bob" '{"quantity":1}' >/dev/null
expect 409
[[ $(field '["error"]["code"]') == sold_out ]] || die "expected sold_out"
for who in "$bob" "$carol"; do
    call POST "/events/$event/waitlist" "$who" '{"quantity":1}' >/dev/null
    expect 201
    echo "position $(field '["position"]')"
done
call GET "/events/$event/waitlist" "$admin" >/dev/null
expect 200

step "Alice cancels: the seat is offered to Bob, first in line"
call POST "/bookings/$sold/cancel" "$alice" >/dev/null
expect 200
call GET "/events/$event/waitlist/me" "$bob" >/dev/null
expect 200
[[ $(field '["status"]') == offered ]] || die "Bob has no offer"
echo "Bob's offer stands until $(field '["offer_expires_at"]')"

step "Bob lets the offer run out; the worker passes the seat to Carol"
deadline=$(($(date +%s) + patience))
while :; do
    call GET "/events/$event/waitlist/me" "$carol" >/dev/null
    expect 200 >/dev/null
    [[ $(field '["status"]') == offered ]] && break
    (($(date +%s) < deadline)) || die "no offer reached Carol within ${patience}s"
    sleep 0.5
done
echo "Carol's offer stands until $(field '["offer_expires_at"]')"

step "Carol accepts: her booking is confirmed"
call POST "/events/$event/waitlist/me/accept" "$carol" >/dev/null
expect 200
[[ $(field '["status"]') == confirmed ]] || die "Carol's booking is not confirmed"
carols=$(field '["id"]')
call GET "/bookings/$carols/tickets.pdf" "$carol" >/dev/null
expect 200
call GET "/me/notifications" "$carol" >/dev/null
expect 200
python3 -c 'import json, sys
for n in json.load(open(sys.argv[1]))["items"]:
    print("  " + n["kind"] + ": " + n["title"])' "$body_file"

step "The admin renames the event (If-Match: the version read) and lists its bookings"
etag=$(curl -s -o /dev/null -D - "$base/events/$event" | tr -d '\r' | awk 'tolower($1) == "etag:" { print $2 }')
call PATCH "/events/$event" "$admin" '{"name":"Walk-through gig (sold out)"}' -H "If-Match: $etag" >/dev/null
expect 200
call PATCH "/events/$event" "$admin" '{"name":"a lost update"}' -H "If-Match: $etag" >/dev/null
expect 409
call GET "/events/$event/bookings" "$admin" >/dev/null
expect 200
python3 -c 'import json, sys
for b in json.load(open(sys.argv[1]))["items"]:
    print("  " + b["status"] + " " + b["source"])' "$body_file"

if [[ -n $mail_dir ]]; then
    step "The e-mails land in $mail_dir"
    # mail DIR RECIPIENT SUBJECT: waits for an .eml to RECIPIENT whose subject starts with SUBJECT.
    wait_for_mail() {
        local deadline=$(($(date +%s) + patience))
        while :; do
            if grep -l -s "^To: .*$1-$run@example.com" "$mail_dir"/*.eml |
                xargs -r grep -l -s "^Subject: $2" | grep -q .; then
                echo "  to $1: $2"
                return
            fi
            (($(date +%s) < deadline)) || die "no e-mail to $1 with subject '$2' within ${patience}s"
            sleep 0.5
        done
    }
    wait_for_mail alice "Booking confirmed"
    wait_for_mail alice "Booking cancelled"
    wait_for_mail bob "Seats available"
    wait_for_mail carol "Seats available"
    wait_for_mail carol "Booking confirmed"
fi

printf '\nwalk-through done\n'
