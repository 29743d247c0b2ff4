"""Drives the gateway with the official Anthropic Python SDK; prints what it got as JSON.

Used by the end-to-end tests (tests/e2e/foundation.rs, identity.rs); GATEWAY_URL points at the
gateway.
"""

import json
import os

import anthropic

# HELPER_TOKEN: what Claude Code's apiKeyHelper prints, which it sends as both x-api-key and
# Authorization: Bearer (an identity provider's token, with identity "jwt").
token = os.environ.get("HELPER_TOKEN")
if token:
    # The SDK takes one credential: the bearer, with the same value as x-api-key beside it.
    client = anthropic.Anthropic(
        base_url=os.environ["GATEWAY_URL"],
        auth_token=token,
        default_headers={"x-api-key": token},
        max_retries=0,
    )
else:
    client = anthropic.Anthropic(
        base_url=os.environ["GATEWAY_URL"], api_key="sk-ant-api03-sdk-client", max_retries=0
    )
request = dict(
    model="claude-sonnet-4-5",
    max_tokens=64,
    system="You are terse.",
    messages=[{"role": "user", "content": "Say hello"}],
)

message = client.messages.create(**request)
with client.messages.stream(**request) as stream:
    streamed_text = "".join(stream.text_stream)
    final = stream.get_final_message()

print(
    json.dumps(
        {
            "text": message.content[0].text,
            "usage": message.usage.model_dump(),
            "stream_text": streamed_text,
            "stream_usage": final.usage.model_dump(),
            "stream_stop_reason": final.stop_reason,
        }
    )
)
