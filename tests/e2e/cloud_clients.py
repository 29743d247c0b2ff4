"""Drives the gateway with the official Anthropic Python SDK in each client mode Claude Code has:
the Messages API (ANTHROPIC_BASE_URL), Bedrock's format (CLAUDE_CODE_USE_BEDROCK=1 with
ANTHROPIC_BEDROCK_BASE_URL=<gateway>/bedrock and CLAUDE_CODE_SKIP_BEDROCK_AUTH=1) and Vertex AI's
(CLAUDE_CODE_USE_VERTEX=1 with ANTHROPIC_VERTEX_BASE_URL=<gateway>/vertex/v1 and
CLAUDE_CODE_SKIP_VERTEX_AUTH=1). Prints what it got as JSON.

    python cloud_clients.py anthropic|bedrock|vertex MODEL

GATEWAY_URL points at the gateway; GATEWAY_KEY is the client's credential (a virtual key, or
anything where the gateway holds the cloud's credential).
"""

import json
import os
import sys

import anthropic

mode, model = sys.argv[1], sys.argv[2]
url, key = os.environ["GATEWAY_URL"], os.environ.get("GATEWAY_KEY", "sk-ant-api03-cloud-client")

if mode == "anthropic":
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
elif mode == "bedrock":
    # What Claude Code sends with SKIP_BEDROCK_AUTH: no SigV4; a bearer (AWS_BEARER_TOKEN_BEDROCK
    # or the gateway's key in ANTHROPIC_CUSTOM_HEADERS) if any.
    client = anthropic.AnthropicBedrock(
        base_url=f"{url}/bedrock", api_key=key, aws_region="us-east-1", max_retries=0
    )
elif mode == "vertex":
    client = anthropic.AnthropicVertex(
        base_url=f"{url}/vertex/v1",
        region="us-east5",
        project_id="client-side-project",
        access_token=key,
        max_retries=0,
    )
else:
    sys.exit(f"unknown mode {mode}")

request = dict(
    model=model,
    max_tokens=64,
    system="You are terse.",
    messages=[{"role": "user", "content": "Say hello to " + mode}],
)
out = {}
message = client.messages.create(**request)
out["text"] = message.content[0].text
out["usage"] = message.usage.model_dump()
out["model"] = message.model
with client.messages.stream(**request) as stream:
    out["stream_text"] = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream_usage"] = final.usage.model_dump()
out["stream_stop_reason"] = final.stop_reason
if mode != "bedrock":
    out["count"] = client.messages.count_tokens(
        model=model, messages=request["messages"]
    ).input_tokens
print(json.dumps(out))
