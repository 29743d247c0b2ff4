#!/usr/bin/env python3
"""Claude Code status line: this session's cost and cache hit ratio, as the gateway counts them.

    "statusLine": {"type": "command", "command": "python3 /path/to/statusline.py"}

in ~/.claude/settings.json. Claude Code runs the command after each turn with the session as
JSON on standard input (`session_id`); the script asks the gateway at ANTHROPIC_BASE_URL for
`GET /v1/gateway/sessions/{id}` with the same credential Claude Code uses (ANTHROPIC_API_KEY
as x-api-key, or ANTHROPIC_AUTH_TOKEN as a bearer token) and prints one line:

    $0.42 - cache 91% - 37 requests

The gateway answers only the caller's own sessions. Standard library only; a gateway that is
down or does not know the session yet prints a short note instead, never a traceback.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 2


def line(session: dict) -> str:
    usage = session["usage"]
    requests = usage["requests"]
    return (
        f"${usage['cost_usd']:.2f} - cache {usage['cache_hit_ratio']:.0%} - "
        f"{requests} request{'' if requests == 1 else 's'}"
    )


def fetch(base_url: str, session_id: str) -> dict:
    url = f"{base_url.rstrip('/')}/v1/gateway/sessions/{urllib.parse.quote(session_id, safe='')}"
    headers = {"accept": "application/json"}
    if os.environ.get("ANTHROPIC_API_KEY"):
        headers["x-api-key"] = os.environ["ANTHROPIC_API_KEY"]
    if os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        headers["authorization"] = f"Bearer {os.environ['ANTHROPIC_AUTH_TOKEN']}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as r:
        return json.load(r)


def main() -> None:
    try:
        session_id = json.load(sys.stdin).get("session_id") or ""
    except (ValueError, AttributeError):
        session_id = ""
    base_url = os.environ.get("ANTHROPIC_BASE_URL", "")
    if not session_id or not base_url:
        print("gateway: no session")
        return
    try:
        print(line(fetch(base_url, session_id)))
    except urllib.error.HTTPError as e:
        print("gateway: new session" if e.code == 404 else f"gateway: HTTP {e.code}")
    except (OSError, ValueError, KeyError):
        print("gateway: unreachable")


if __name__ == "__main__":
    main()
