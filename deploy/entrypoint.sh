#!/bin/sh
# Entrypoint of the Airlock image: export secrets a process reads from its environment, wait for what it
# needs, then run the command.
set -eu

# A model's API key is read from the variable its spec names (model.api_key_env): a compose secret named
# env.NAME (mounted at /run/secrets/env.NAME) becomes the variable NAME.
for file in /run/secrets/env.*; do
    [ -f "$file" ] || continue
    export "${file#/run/secrets/env.}=$(cat "$file")"
done

# A worker waits for its OPA sidecar to have activated a policy bundle: until then every decision is denied.
if [ -n "${WAIT_FOR_URL:-}" ]; then
    until python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$WAIT_FOR_URL" \
            2>/dev/null; do
        echo "waiting for $WAIT_FOR_URL" >&2
        sleep 2
    done
fi

exec "$@"
