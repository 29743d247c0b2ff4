#!/usr/bin/env python3
"""Mock cloud vendors for the gateway's end-to-end tests.

    python vendors.py --kind bedrock|vertex|foundry|gcp-metadata|idp --record FILE.jsonl [options]
    python vendors.py --self-test

A threaded HTTP/1.1 server on 127.0.0.1 (ephemeral port, printed as `port N` on the first stdout
line). Each kind checks what the real service checks (SigV4 for Bedrock, the bearer token for
Vertex, the API key and deployment for Foundry, the Metadata-Flavor header for the GCP metadata
server) and answers in that service's format. Every request is appended to the record file as
one JSON line together with what the mock answered, before the answer is sent, so a test that
got its response can read the record at once.

Request headers that steer the mock (the gateway forwards unknown headers):
    x-mock-scenario   ok (default) | status:<code> | error:<Exception>[:<status>] (bedrock)
                      | exception:<member> | truncate | crc | oversize | garbage (bedrock stream)
                      | sse-error:<type> | truncate (vertex, foundry stream)
    x-mock-seed       seed of the random cuts and padding (default: CRC-32 of the body)
    x-mock-deltas     content_block_delta events per answer (default 4); output = deltas * 3
    x-mock-cache-read, x-mock-cache-write, x-mock-cache-write-1h   cache token counts (default 0)

Usage is deterministic: input_tokens = len(compact JSON of messages) // 4 (at least 1).

A record line: seq, time, kind, method, path (as received), headers ([[name, value], ...] in
order), body_b64, and the answer: status, scenario, model, usage (what the answer reported:
input/output/cache_read/cache_creation tokens, the 5m/1h split, `complete` false when the
stream ended before message_delta; null for errors), check (the check that failed, e.g.
"sigv4:signature", "body:extraneous-key", null when none did), error ({type, message} of an
error answer), detail (for a SigV4 mismatch: the canonical request and string to sign).
"""

import argparse
import base64
import hashlib
import hmac
import json
import random
import re
import signal
import struct
import sys
import threading
import time
import traceback
import zlib
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from botocore.loaders import Loader

# ---------------------------------------------------------------------------------------------
# Constants (sources: shared/reference/cloud-vendors.md)

IO_TIMEOUT_S = 30  # a connection that sends nothing for this long is dropped
MAX_BODY = 40 * 1024 * 1024  # above the gateway's 32 MiB limit, so its own limit shows first
MAX_PIECES = 48  # pieces a streamed answer is cut into (bounds the time a stream takes)
MAX_DELTAS = 200
OUTPUT_PER_DELTA = 3
SIGV4_MAX_SKEW = timedelta(minutes=15)  # AWS rejects a request signed further away than this
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"

BEDROCK_VERSION = "bedrock-2023-05-31"
VERTEX_VERSION = "vertex-2023-10-16"
# Top-level keys InvokeModel accepts for Claude (cloud-vendors.md §1.3).
INVOKE_KEYS = frozenset(
    "anthropic_version max_tokens messages anthropic_beta system stop_sequences temperature "
    "top_p top_k tools tool_choice thinking metadata output_config context_management".split()
)
# Betas "confirmed accepted" on Bedrock by live probes (cloud-vendors.md §1.4). Also the Vertex
# default: both run Anthropic's models, and a test narrows either list with --betas.
ACCEPTED_BETAS = (
    "computer-use-2024-10-22 computer-use-2025-01-24 context-1m-2025-08-07 "
    "context-management-2025-06-27 dev-full-thinking-2025-05-14 "
    "fine-grained-tool-streaming-2025-05-14 interleaved-thinking-2025-05-14 mcp-client-2025-04-04 "
    "mcp-client-2025-11-20 model-context-window-exceeded-2025-08-26 output-128k-2025-02-19 "
    "pdfs-2024-09-25 search-results-2025-06-09 token-counting-2024-11-01 "
    "token-efficient-tools-2025-02-19 tool-search-tool-2025-10-19 web-search-2025-03-05"
).split()

# x-amzn-errortype namespaces: authentication errors come from the AWS front end (coral),
# operation errors from the Bedrock service.
CORAL_NS = "http://internal.amazon.com/coral/com.amazon.coral.service/"
BEDROCK_NS = "http://internal.amazon.com/coral/com.amazon.bedrock/"

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
AWS_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "InternalServerException": "The system encountered an unexpected error during processing. "
    "Try your request again.",
    "ModelStreamErrorException": "The model encountered an error while streaming the response.",
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ANTHROPIC_ERROR_MESSAGES = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}
GOOGLE_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


# ---------------------------------------------------------------------------------------------
# What arrived, what goes back


class Request:
    """A request as received: method, raw target, headers in order, body bytes."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def route(self):
        return self.path.split("?", 1)[0]

    def header_int(self, name, default=0, low=0, high=10**9):
        try:
            return max(low, min(high, int(self.header(name) or default)))
        except ValueError:
            return default


class Answer:
    """A response and what the record says about it.

    `body` is sent with content-length; `pieces` (a list of bytes) as one HTTP chunk each."""

    def __init__(self, status, headers, body=b"", pieces=None, usage=None, check=None, error=None):
        self.status = status
        self.headers = list(headers)
        self.body = body
        self.pieces = pieces
        self.usage = usage
        self.check = check
        self.error = error
        self.scenario = None  # None: the request's x-mock-scenario (or ok) goes in the record
        self.model = None
        self.detail = None


class Rejected(Exception):
    """A check failed: carries the answer the vendor gives."""

    def __init__(self, answer):
        super().__init__(answer.check)
        self.answer = answer


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_answer(status, value, headers=(), **kw):
    return Answer(status, [("content-type", "application/json"), *headers], compact(value).encode(), **kw)


def anthropic_error(status, error_type, message, check=None, request_id=None, headers=()):
    value = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id:
        value["request_id"] = request_id
    error = {"type": error_type, "message": message}
    return json_answer(status, value, headers, check=check, error=error)


def status_answer(code, request_id=None):
    """`status:<code>`: an Anthropic-shaped error with that status (failover tests)."""
    error_type = ANTHROPIC_ERROR_TYPES.get(code, "api_error")
    message = ANTHROPIC_ERROR_MESSAGES.get(error_type, f"mock status {code}")
    headers = [("retry-after", "1")] if code == 429 else []
    answer = anthropic_error(code, error_type, message, request_id=request_id, headers=headers)
    answer.scenario = f"status:{code}"
    return answer


def mock_misuse(message):
    """A test asked for something the mock cannot do: loud, and named as the mock's."""
    return Rejected(json_answer(400, {"message": f"mock: {message}"}, check="mock:scenario",
                                error={"type": "MockMisuse", "message": message}))


def parse_json_body(req):
    try:
        return json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------------------------------------
# Usage and Anthropic messages


class Usage:
    """Deterministic token counts for one answer, from the body and the x-mock-* headers."""

    def __init__(self, body, req, input_tokens=None):
        if input_tokens is None:
            input_tokens = max(1, len(compact(body.get("messages", []))) // 4)
        self.input = input_tokens
        self.cache_read = req.header_int("x-mock-cache-read")
        self.cache_5m = req.header_int("x-mock-cache-write")
        self.cache_1h = req.header_int("x-mock-cache-write-1h")
        self.deltas = req.header_int("x-mock-deltas", 4, low=1, high=MAX_DELTAS)
        self.output = self.deltas * OUTPUT_PER_DELTA

    def anthropic(self, output=None):
        return {
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_5m + self.cache_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_5m,
                "ephemeral_1h_input_tokens": self.cache_1h,
            },
            "output_tokens": self.output if output is None else output,
        }

    def record(self, output=None, complete=True):
        """What the record says was reported (flat, for comparing with metrics and audit)."""
        return {
            "input_tokens": self.input,
            "output_tokens": self.output if output is None else output,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation_input_tokens": self.cache_5m + self.cache_1h,
            "ephemeral_5m_input_tokens": self.cache_5m,
            "ephemeral_1h_input_tokens": self.cache_1h,
            "complete": complete,
        }


def random_id(rng, prefix, n=24):
    return prefix + "".join(rng.choice(ALNUM) for _ in range(n))


def delta_text(i):
    return f"word{i} "


def message(msg_id, model, usage):
    text = "".join(delta_text(i) for i in range(usage.deltas))
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage.anthropic(),
    }


def stream_events(msg_id, model, usage):
    """The Anthropic streaming events of one answer; output_tokens 1 at message_start, the
    total in message_delta (cumulative, as the API reports it)."""
    start = dict(message(msg_id, model, usage), content=[], stop_reason=None, usage=usage.anthropic(1))
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for i in range(usage.deltas):
        events.append({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": delta_text(i)}})
    events.append({"type": "content_block_stop", "index": 0})
    events.append({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": usage.output}})
    events.append({"type": "message_stop"})
    return events


def sse_event(event):
    return f"event: {event['type']}\ndata: {compact(event)}\n\n".encode()


def seed_of(req):
    try:
        return int(req.header("x-mock-seed"))
    except (TypeError, ValueError):
        return zlib.crc32(req.body)


def cut(data, starts, rng):
    """Cuts `data` at random offsets into at most MAX_PIECES pieces, some of the cuts inside the
    first 12 bytes of a unit (an event-stream prelude, an SSE event's head) that begins at one
    of `starts`: where incremental decoders go wrong."""
    if len(data) < 2:
        return [data]
    wanted = rng.randint(min(6, MAX_PIECES), MAX_PIECES) - 1
    cuts = set()
    for start in rng.sample(starts, k=min(len(starts), max(1, wanted // 3))):
        cuts.add(start + rng.randint(1, 11))
    while len(cuts) < wanted and len(cuts) < len(data) - 1:
        cuts.add(rng.randint(1, len(data) - 1))
    bounds = [0] + sorted(c for c in cuts if 0 < c < len(data)) + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def joined(units):
    """Concatenates byte units; returns the bytes and each unit's start offset."""
    starts, offset = [], 0
    for unit in units:
        starts.append(offset)
        offset += len(unit)
    return b"".join(units), starts


# ---------------------------------------------------------------------------------------------
# AWS event stream (application/vnd.amazon.eventstream), string headers only


def encode_header(name, value):
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v


def encode_frame(headers, payload, bad_crc=False):
    """One message: prelude (total, headers length, CRC-32 of those 8 bytes), headers, payload,
    CRC-32 of everything before it. `bad_crc` flips the message CRC."""
    raw_headers = b"".join(encode_header(k, v) for k, v in headers)
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message_bytes = prelude + raw_headers + payload
    crc = zlib.crc32(message_bytes) ^ (0xFFFFFFFF if bad_crc else 0)
    return message_bytes + struct.pack(">I", crc)


def chunk_frame(event, rng, bad_crc=False):
    """A Bedrock `chunk` event: {"bytes": base64 of one Anthropic event, "p": padding}."""
    payload = {"bytes": base64.b64encode(compact(event).encode()).decode(),
               "p": ALNUM[: rng.randint(1, len(ALNUM))]}
    headers = [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")]
    return encode_frame(headers, compact(payload).encode(), bad_crc)


def exception_frame(member, message_text):
    payload = {"message": message_text}
    if member == "modelStreamErrorException":
        payload.update(originalStatusCode=500, originalMessage=message_text)
    headers = [(":exception-type", member), (":content-type", "application/json"),
               (":message-type", "exception")]
    return encode_frame(headers, compact(payload).encode())


def oversize_prelude():
    """A prelude announcing a 32 MiB message, with a valid prelude CRC."""
    prelude = struct.pack(">II", 32 * 1024 * 1024, 0)
    return prelude + struct.pack(">I", zlib.crc32(prelude))


# ---------------------------------------------------------------------------------------------
# SigV4 verification (Bedrock)

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$"
)


class ReplaySigV4(SigV4Auth):
    """botocore's SigV4 signer, restricted to the headers the request says it signed.

    botocore's own selection leaves out a few headers (user-agent, connection, ...) that another
    signer (Envoy's) may include; the server side must use the request's SignedHeaders."""

    def __init__(self, credentials, service, region, signed_names):
        super().__init__(credentials, service, region)
        self._signed_names = signed_names

    def headers_to_sign(self, request):
        selected = HTTPHeaders()
        for name in self._signed_names:
            for value in request.headers.get_all(name) or []:
                selected[name] = value
        return selected


def sigv4_signature(req, signed_names, amz_date, secret_key, region, service, access_key="x"):
    """Recomputes the signature of `req` as received; returns (signature, canonical request,
    string to sign)."""
    host = req.header("host") or "localhost"
    aws = AWSRequest(method=req.method, url=f"http://{host}{req.path}", data=req.body)
    for name, value in req.headers:
        if name.lower() in signed_names:
            aws.headers[name.lower()] = value  # HTTPHeaders appends: repeated headers stay
    aws.context["timestamp"] = amz_date
    signer = ReplaySigV4(Credentials(access_key, secret_key), service, region, signed_names)
    canonical = signer.canonical_request(aws)
    to_sign = signer.string_to_sign(aws, canonical)
    return signer.signature(to_sign, aws), canonical, to_sign


def aws_error(status, error_type, message, check, namespace=BEDROCK_NS, detail=None):
    headers = [("x-amzn-errortype", f"{error_type}:{namespace}"), ("x-amzn-requestid", request_uuid())]
    answer = json_answer(status, {"message": message}, headers, check=check,
                         error={"type": error_type, "message": message})
    answer.detail = detail
    return Rejected(answer)


def auth_error(error_type, message, check, detail=None):
    return aws_error(403, error_type, message, check, CORAL_NS, detail)


def request_uuid():
    return "%08x-%04x-%04x-%04x-%012x" % tuple(random.getrandbits(b) for b in (32, 16, 16, 16, 48))


def verify_sigv4(req, creds, now=None):
    """Checks the request as AWS does; raises Rejected with AWS's answer when it fails.

    `creds`: access_key, secret_key, region, service, session_token (None: not checked)."""
    auth = req.header("authorization")
    if auth is None:
        raise auth_error("MissingAuthenticationTokenException", "Missing Authentication Token", "sigv4:missing")
    match = AUTH_RE.match(auth.strip())
    parts = match.group(1).split("/") if match else []
    if len(parts) != 5:
        raise auth_error("IncompleteSignatureException",
                         f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                         f"parameters (got a malformed header)", "sigv4:malformed")
    access_key, date, region, service, terminator = parts
    signed_names = match.group(2).lower().split(";")
    if access_key != creds["access_key"]:
        raise auth_error("UnrecognizedClientException", "The security token included in the request is invalid.",
                         "sigv4:access-key")
    amz_date = req.header("x-amz-date")
    if amz_date is None:
        raise auth_error("IncompleteSignatureException",
                         "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                         "sigv4:date")
    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        raise auth_error("IncompleteSignatureException",
                         f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.", "sigv4:date") from None
    if date != amz_date[:8]:
        raise auth_error("InvalidSignatureException",
                         f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                         f"from HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'.", "sigv4:scope")
    if region != creds["region"]:
        raise auth_error("InvalidSignatureException", "Credential should be scoped to a valid region. ",
                         "sigv4:scope")
    if service != creds["service"]:
        raise auth_error("InvalidSignatureException",
                         f"Credential should be scoped to correct service: '{creds['service']}'. ", "sigv4:scope")
    if terminator != "aws4_request":
        raise auth_error("InvalidSignatureException",
                         f"Credential should be scoped with a valid terminator: 'aws4_request', not "
                         f"'{terminator}'. ", "sigv4:scope")
    now = now or datetime.now(timezone.utc)
    if now - signed_at > SIGV4_MAX_SKEW:
        raise auth_error("InvalidSignatureException",
                         f"Signature expired: {amz_date} is now earlier than "
                         f"{(now - SIGV4_MAX_SKEW).strftime(SIGV4_TIMESTAMP)} "
                         f"({now.strftime(SIGV4_TIMESTAMP)} - 15 min.)", "sigv4:expired")
    if signed_at - now > SIGV4_MAX_SKEW:
        raise auth_error("InvalidSignatureException",
                         f"Signature not yet current: {amz_date} is still later than "
                         f"{(now + SIGV4_MAX_SKEW).strftime(SIGV4_TIMESTAMP)} "
                         f"({now.strftime(SIGV4_TIMESTAMP)} + 15 min.)", "sigv4:expired")
    if "host" not in signed_names:
        raise auth_error("InvalidSignatureException",
                         "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", "sigv4:host")
    if creds.get("session_token") is not None:
        token = req.header("x-amz-security-token")
        if token != creds["session_token"] or "x-amz-security-token" not in signed_names:
            raise auth_error("UnrecognizedClientException",
                             "The security token included in the request is invalid.", "sigv4:security-token")
    # Payload signing: the signed hash must be the hash of the body that arrived.
    if req.header("x-amz-content-sha256") != hashlib.sha256(req.body).hexdigest():
        raise auth_error("InvalidSignatureException",
                         "The provided 'x-amz-content-sha256' header does not match what was computed.",
                         "sigv4:content-sha256")
    expected, canonical, to_sign = sigv4_signature(
        req, signed_names, amz_date, creds["secret_key"], region, service, access_key)
    if not hmac.compare_digest(expected, match.group(3)):
        detail = {"canonical_request": canonical, "string_to_sign": to_sign}
        raise auth_error("InvalidSignatureException",
                         f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
                         f"'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n",
                         "sigv4:signature", detail)


# ---------------------------------------------------------------------------------------------
# Bedrock (InvokeModel, InvokeModelWithResponseStream, CountTokens)

BEDROCK_PATH = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream|count-tokens)$")
STREAM_SCENARIOS = ("exception", "truncate", "crc", "oversize", "garbage")


class BedrockModel:
    """What the mock reads from botocore's service model: the model-id pattern, the error
    statuses and the stream's exception members."""

    _loaded = None

    def __init__(self):
        model = Loader().load_service_model("bedrock-runtime", "service-2")
        shapes = model["shapes"]
        self.model_id = re.compile(shapes["InvokeModelIdentifier"]["pattern"])
        self.statuses = {name: s["error"]["httpStatusCode"] for name, s in shapes.items() if s.get("exception")}
        self.stream_members = [m for m in shapes["ResponseStream"]["members"] if m != "chunk"]

    @classmethod
    def get(cls):
        if cls._loaded is None:
            cls._loaded = cls()
        return cls._loaded


def anthropic_model_name(model_id):
    """The Anthropic name in answers: `us.anthropic.claude-sonnet-4-5-20250929-v1:0` ->
    `claude-sonnet-4-5-20250929`; an ARN (no name in it) -> a fixed Claude name."""
    found = re.search(r"anthropic\.(claude-[a-z0-9-]+?)(-v\d+(:\d+)?)?$", model_id)
    return found.group(1) if found else "claude-sonnet-4-5-20250929"


def check_invoke_body(body, betas):
    """InvokeModel's validation of an Anthropic body; raises Rejected (ValidationException)."""

    def invalid(message, check):
        return aws_error(400, "ValidationException", message, check)

    def malformed(what, check):
        return invalid(f"Malformed input request: {what}, please reformat your input and try again.", check)

    if not isinstance(body, dict):
        raise malformed(f"#: expected type: JSONObject, found: {type(body).__name__}", "body:json")
    for key in body:
        if key not in INVOKE_KEYS:
            raise malformed(f"#: extraneous key [{key}] is not permitted", "body:extraneous-key")
    for key in ("anthropic_version", "max_tokens", "messages"):
        if key not in body:
            raise malformed(f"#: required key [{key}] not found", f"body:{key}")
    if body["anthropic_version"] != BEDROCK_VERSION:
        raise malformed(f"#/anthropic_version: {body['anthropic_version']} is not a valid enum value",
                        "body:anthropic_version")
    flags = body.get("anthropic_beta", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise malformed("#/anthropic_beta: expected type: JSONArray of strings", "body:anthropic_beta")
    if any(f not in betas for f in flags):
        raise invalid("invalid beta flag", "body:anthropic_beta")


class Bedrock:
    kind = "bedrock"

    def __init__(self, args):
        self.creds = {"access_key": args.access_key, "secret_key": args.secret_key, "region": args.region,
                      "service": args.service, "session_token": args.session_token}
        self.betas = ACCEPTED_BETAS if args.betas is None else split_list(args.betas)
        self.pause = args.pause_ms / 1000

    def answer(self, req):
        verify_sigv4(req, self.creds)
        operation, model_id = self.route(req)
        body = parse_json_body(req)
        if operation == "count-tokens":
            return self.count_tokens(req, body, model_id)
        check_invoke_body(body, self.betas)
        rng = random.Random(seed_of(req))
        scenario = req.header("x-mock-scenario") or "ok"
        early = self.early_scenario(scenario)
        if early is not None:
            return early
        usage = Usage(body, req)
        msg_id = random_id(rng, "msg_bdrk_01")
        model = anthropic_model_name(model_id)
        if operation == "invoke":
            if scenario != "ok":
                raise mock_misuse(f"scenario {scenario!r} needs invoke-with-response-stream")
            return self.invoke_answer(message(msg_id, model, usage), usage)
        return self.stream_answer(stream_events(msg_id, model, usage), usage, scenario, rng)

    def route(self, req):
        found = BEDROCK_PATH.match(req.route) if req.method == "POST" else None
        if found is None:
            raise aws_error(404, "UnknownOperationException", "", "path:operation", CORAL_NS)
        # The path segment is percent-decoded once: `%2F` in an ARN is a `/` of the id, and an
        # id that still holds a `%` was encoded twice.
        model_id = unquote(found.group(1))
        if len(model_id) > 2048 or not BedrockModel.get().model_id.fullmatch(model_id):
            raise aws_error(400, "ValidationException", "The provided model identifier is invalid.",
                            "path:model-id")
        return found.group(2), model_id

    def early_scenario(self, scenario):
        """Scenarios answered before any model output: `error:` and `status:`."""
        if scenario.startswith("error:"):
            _, name, *status = scenario.split(":")
            code = parse_code(status[0], scenario) if status else BedrockModel.get().statuses.get(name, 400)
            answer = aws_error(code, name, AWS_MESSAGES.get(name, f"{name} (mock)"), None).answer
            answer.scenario = scenario
            return answer
        if scenario.startswith("status:"):
            return status_answer(parse_status(scenario))
        if scenario != "ok" and scenario.split(":")[0] not in STREAM_SCENARIOS:
            raise mock_misuse(f"unknown scenario {scenario!r}")
        return None

    def invoke_answer(self, msg, usage):
        headers = [
            ("x-amzn-requestid", request_uuid()),
            ("x-amzn-bedrock-invocation-latency", "1234"),
            ("x-amzn-bedrock-input-token-count", str(usage.input)),
            ("x-amzn-bedrock-output-token-count", str(usage.output)),
            ("x-amzn-bedrock-cache-read-input-token-count", str(usage.cache_read)),
            ("x-amzn-bedrock-cache-write-input-token-count", str(usage.cache_5m + usage.cache_1h)),
        ]
        answer = json_answer(200, msg, headers, usage=usage.record())
        answer.model = msg["model"]
        return answer

    def stream_answer(self, events, usage, scenario, rng):
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": usage.input, "outputTokenCount": usage.output,
            "invocationLatency": 1234, "firstByteLatency": 321,
        }
        frames, reported = self.scenario_frames(events, usage, scenario, rng)
        data, starts = joined(frames)
        headers = [
            ("content-type", "application/vnd.amazon.eventstream"),
            ("x-amzn-bedrock-content-type", "application/json"),
            ("x-amzn-requestid", request_uuid()),
        ]
        answer = Answer(200, headers, pieces=cut(data, starts, rng), usage=reported)
        answer.scenario = scenario
        answer.model = events[0]["message"]["model"]
        return answer

    @staticmethod
    def scenario_frames(events, usage, scenario, rng):
        """The frames a scenario sends, and the usage they report."""
        frames = [chunk_frame(e, rng) for e in events]
        partial = usage.record(output=1, complete=False)  # only message_start's usage got out
        delta_end = len(events) - 2  # index of message_delta
        if scenario == "ok":
            return frames, usage.record()
        if scenario.startswith("exception:"):
            member = scenario.split(":", 1)[1]
            if member not in BedrockModel.get().stream_members:
                raise mock_misuse(f"{member!r} is not a ResponseStream exception member")
            name = member[0].upper() + member[1:]
            return frames[:4] + [exception_frame(member, AWS_MESSAGES.get(name, name))], partial
        if scenario == "truncate":
            # Ends inside the message_delta frame: the usage in it never arrives.
            return frames[:delta_end] + [frames[delta_end][: len(frames[delta_end]) // 2]], partial
        if scenario == "crc":
            frames[3] = chunk_frame(events[3], rng, bad_crc=True)  # a delta's frame (with 2+ deltas)
            return frames, usage.record()
        if scenario == "oversize":
            return frames[:4] + [oversize_prelude() + bytes(rng.getrandbits(8) for _ in range(64))], partial
        if scenario == "garbage":
            return frames + [bytes(rng.getrandbits(8) for _ in range(rng.randint(16, 64)))], usage.record()
        raise mock_misuse(f"unknown scenario {scenario!r}")

    def count_tokens(self, req, body, model_id):
        inner = None
        try:
            encoded = body["input"]["invokeModel"]["body"]
            inner = json.loads(base64.b64decode(encoded, validate=True))
        except (KeyError, TypeError, ValueError):
            pass
        if not isinstance(body, dict) or inner is None:
            raise aws_error(400, "ValidationException",
                            "Malformed input request: #/input: expected {\"invokeModel\":{\"body\":<base64 JSON>}}, "
                            "please reformat your input and try again.", "count-tokens:input")
        check_invoke_body(inner, self.betas)  # max_tokens included, as for invoke
        scenario = req.header("x-mock-scenario") or "ok"
        if scenario != "ok":
            early = self.early_scenario(scenario)
            if early is None:
                raise mock_misuse(f"scenario {scenario!r} is for streams")
            return early
        usage = Usage(inner, req)
        answer = json_answer(200, {"inputTokens": usage.input}, [("x-amzn-requestid", request_uuid())],
                             usage={"input_tokens": usage.input, "complete": True})
        answer.model = model_id
        return answer


def parse_status(scenario):
    return parse_code(scenario.split(":", 1)[1], scenario)


def parse_code(text, scenario):
    try:
        code = int(text)
    except ValueError:
        code = 0
    if not 100 <= code <= 599:
        raise mock_misuse(f"bad status in {scenario!r}")
    return code


def split_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


# ---------------------------------------------------------------------------------------------
# Anthropic-format vendors (Vertex AI, Foundry): shared answers


class AnthropicFormat:
    """JSON and SSE answers in the Messages API's shapes; subclasses do the vendor's checks."""

    id_prefix = "msg_01"
    request_prefix = "req_01"

    def __init__(self, args):
        self.pause = args.pause_ms / 1000

    def error(self, status, message, check, error_type=None, headers=()):
        error_type = error_type or ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        rid = random_id(random.Random(), self.request_prefix)
        return Rejected(anthropic_error(status, error_type, message, check, rid, headers))

    def check_betas(self, req, allowed):
        values = [v.strip() for h in req.header_all("anthropic-beta") for v in h.split(",") if v.strip()]
        unexpected = [v for v in values if v not in allowed]
        if unexpected:
            shown = ", ".join(f"`{v}`" for v in unexpected)
            raise self.error(400, f"Unexpected value(s) {shown} for the `anthropic-beta` header. Please consult "
                                  "our documentation at docs.anthropic.com or try again without the header.",
                             "header:anthropic-beta")

    def check_messages_body(self, body):
        for key in ("max_tokens", "messages"):
            if key not in body:
                raise self.error(400, f"{key}: Field required", f"body:{key}")

    def respond(self, req, body, model, stream):
        scenario = req.header("x-mock-scenario") or "ok"
        if scenario.startswith("status:"):
            return status_answer(parse_status(scenario), random_id(random.Random(), self.request_prefix))
        rng = random.Random(seed_of(req))
        usage = Usage(body, req)
        msg_id = random_id(rng, self.id_prefix)
        if not stream:
            if scenario != "ok":
                raise mock_misuse(f"unknown scenario {scenario!r} for a non-streamed answer")
            answer = json_answer(200, message(msg_id, model, usage), [("request-id", random_id(rng, self.request_prefix))],
                                 usage=usage.record())
        else:
            answer = self.sse_answer(stream_events(msg_id, model, usage), usage, scenario, rng)
        answer.model = model
        answer.scenario = scenario
        return answer

    def sse_answer(self, events, usage, scenario, rng):
        units = [sse_event(e) for e in events]
        reported = usage.record()
        if scenario.startswith("sse-error:"):
            error_type = scenario.split(":", 1)[1]
            error = {"type": "error", "error": {"type": error_type,
                                                "message": ANTHROPIC_ERROR_MESSAGES.get(error_type, error_type)}}
            units = units[:4] + [sse_event(error)]
            reported = usage.record(output=1, complete=False)
        elif scenario == "truncate":
            delta = units[-2]
            units = units[:-2] + [delta[: len(delta) // 2]]
            reported = usage.record(output=1, complete=False)
        elif scenario != "ok":
            raise mock_misuse(f"unknown scenario {scenario!r}")
        data, starts = joined(units)
        headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
                   ("request-id", random_id(rng, self.request_prefix))]
        return Answer(200, headers, pieces=cut(data, starts, rng), usage=reported)

    def count_answer(self, req, body):
        scenario = req.header("x-mock-scenario") or "ok"
        if scenario.startswith("status:"):
            return status_answer(parse_status(scenario))
        if scenario != "ok":
            raise mock_misuse(f"scenario {scenario!r} does not apply to count-tokens")
        usage = Usage(body, req)
        answer = json_answer(200, {"input_tokens": usage.input}, usage={"input_tokens": usage.input, "complete": True})
        answer.model = body.get("model")
        return answer


# ---------------------------------------------------------------------------------------------
# Vertex AI (rawPredict, streamRawPredict, count-tokens:rawPredict)

VERTEX_PATH = re.compile(
    r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$"
)


def google_error(code, status, message, check):
    return Rejected(json_answer(code, {"error": {"code": code, "message": message, "status": status}},
                                check=check, error={"type": status, "message": message}))


class Vertex(AnthropicFormat):
    kind = "vertex"
    id_prefix = "msg_vrtx_01"
    request_prefix = "req_vrtx_01"

    def __init__(self, args):
        super().__init__(args)
        if (args.token is None) == (args.token_file is None):
            raise SystemExit("vertex needs exactly one of --token, --token-file")
        self.token, self.token_file = args.token, args.token_file
        self.project, self.region = args.project, args.region
        self.betas = ACCEPTED_BETAS if args.betas is None else split_list(args.betas)

    def expected_token(self):
        if self.token_file is None:
            return self.token
        return read_token(self.token_file)  # re-read: a test rotates it

    def answer(self, req):
        auth = req.header("authorization") or ""
        token = self.expected_token()
        if not token or not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
            rejected = google_error(401, "UNAUTHENTICATED", GOOGLE_UNAUTHENTICATED, "auth:bearer")
            rejected.answer.headers.append(("www-authenticate", 'Bearer realm="https://accounts.google.com/"'))
            raise rejected
        found = VERTEX_PATH.match(req.route) if req.method == "POST" else None
        if found is None:
            raise google_error(404, "NOT_FOUND", f"The requested URL {req.route} was not found on this server.", "path")
        project, region, model, method = found.group(1), found.group(2), unquote(found.group(3)), found.group(4)
        if project != self.project:
            raise google_error(404, "NOT_FOUND", f"Project `{project}` not found or the caller lacks access.",
                               "path:project")
        if region != self.region:
            raise google_error(400, "INVALID_ARGUMENT",
                               f"Location `{region}` does not match the endpoint's location `{self.region}`.",
                               "path:region")
        body = parse_json_body(req)
        if not isinstance(body, dict):
            raise self.error(400, "There was an error parsing the body of the request as JSON.", "body:json")
        if body.get("anthropic_version") != VERTEX_VERSION:
            raise self.error(400, f"anthropic_version: Input should be '{VERTEX_VERSION}'", "body:anthropic_version")
        self.check_betas(req, self.betas)
        if model == "count-tokens":
            return self.count_tokens(req, body, method)
        if "model" in body:
            raise self.error(400, "model: Extra inputs are not permitted", "body:model")
        stream = body.get("stream", False)
        if (method == "streamRawPredict") != (stream is True):
            raise self.error(400, f"stream: must be true for :streamRawPredict and absent or false for "
                                  f":rawPredict (got {compact(stream)} on :{method})", "body:stream")
        self.check_messages_body(body)
        return self.respond(req, body, model, stream)

    def count_tokens(self, req, body, method):
        if method != "rawPredict":
            raise google_error(404, "NOT_FOUND", "count-tokens is served by :rawPredict only.", "path")
        model = body.get("model")
        if not isinstance(model, str):
            raise self.error(400, "model: Field required", "body:model")
        if model.endswith(("@default", "@latest")):
            raise self.error(400, f"Model alias `{model}` is not supported for token counting.", "body:model")
        if "messages" not in body:
            raise self.error(400, "messages: Field required", "body:messages")
        return self.count_answer(req, body)


# ---------------------------------------------------------------------------------------------
# Microsoft Foundry (/anthropic/v1/messages)

FOUNDRY_PATHS = {"/anthropic/v1/messages": False, "/anthropic/v1/messages/count_tokens": True}


class Foundry(AnthropicFormat):
    kind = "foundry"

    def __init__(self, args):
        super().__init__(args)
        if not args.api_key or not args.deployments:
            raise SystemExit("foundry needs --api-key and --deployments")
        self.api_key = args.api_key
        self.deployments = split_list(args.deployments)
        self.betas = None if args.betas is None else split_list(args.betas)

    def answer(self, req):
        if req.method != "POST" or req.route not in FOUNDRY_PATHS:
            raise self.error(404, f"Not Found: {req.method} {req.route}", "path")
        key = req.header("x-api-key") or ""
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise self.error(401, "invalid x-api-key", "auth:x-api-key")
        if not req.header("anthropic-version"):
            raise self.error(400, "anthropic-version: header is required", "header:anthropic-version")
        if self.betas is not None:
            self.check_betas(req, self.betas)
        body = parse_json_body(req)
        if not isinstance(body, dict):
            raise self.error(400, "There was an error parsing the body of the request as JSON.", "body:json")
        model = body.get("model")
        if not isinstance(model, str):
            raise self.error(400, "model: Field required", "body:model")
        if model not in self.deployments:
            raise self.error(404, f"model: {model}", "body:model")
        if FOUNDRY_PATHS[req.route]:
            if "messages" not in body:
                raise self.error(400, "messages: Field required", "body:messages")
            return self.count_answer(req, body)
        self.check_messages_body(body)
        return self.respond(req, body, model, body.get("stream") is True)


# ---------------------------------------------------------------------------------------------
# Bedrock's Messages API surface (`/anthropic/v1/messages`, plain SSE)

MANTLE_MODEL = re.compile(r"^anthropic\.claude-[a-z0-9.-]+$")


class BedrockMessages(AnthropicFormat):
    """Bedrock's Messages surface: SigV4 like InvokeModel (service `bedrock-mantle` on Mantle,
    `bedrock` on bedrock-runtime), model ids `anthropic.<model>` in the body; Mantle takes the
    API version as the `anthropic-version` header, bedrock-runtime as `anthropic_version` in the
    body (cloud-vendors.md section 1.0)."""

    kind = "bedrock-messages"
    id_prefix = "msg_bdrk_01"

    def __init__(self, args):
        super().__init__(args)
        self.creds = {"access_key": args.access_key, "secret_key": args.secret_key, "region": args.region,
                      "service": args.service, "session_token": args.session_token}
        self.mantle = args.service == "bedrock-mantle"

    def answer(self, req):
        verify_sigv4(req, self.creds)
        if req.method != "POST" or req.route not in FOUNDRY_PATHS:
            raise self.error(404, f"Not Found: {req.method} {req.route}", "path")
        body = parse_json_body(req)
        if not isinstance(body, dict):
            raise self.error(400, "There was an error parsing the body of the request as JSON.", "body:json")
        if self.mantle and req.header("anthropic-version") != "2023-06-01":
            raise self.error(400, "anthropic-version: header must be 2023-06-01", "header:anthropic-version")
        if not self.mantle and body.get("anthropic_version") != "bedrock-2023-05-31":
            raise self.error(400, "anthropic_version: must be bedrock-2023-05-31", "body:anthropic_version")
        model = body.get("model")
        if not isinstance(model, str) or not MANTLE_MODEL.match(model):
            raise self.error(404, f"model: {model}", "body:model")
        if FOUNDRY_PATHS[req.route]:
            return self.count_answer(req, body)
        self.check_messages_body(body)
        return self.respond(req, body, model, body.get("stream") is True)


# ---------------------------------------------------------------------------------------------
# GCP metadata server (access tokens for gcp_authn)

METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


class GcpMetadata:
    kind = "gcp-metadata"

    def __init__(self, args):
        if not args.token_file:
            raise SystemExit("gcp-metadata needs --token-file")
        self.token_file = args.token_file

    def answer(self, req):
        if req.method != "GET" or req.route != METADATA_TOKEN_PATH:
            raise Rejected(Answer(404, [("content-type", "text/html; charset=UTF-8")], b"Not Found\n", check="path"))
        if req.header("metadata-flavor") != "Google":
            body = b"Missing required header: Metadata-Flavor\n"
            raise Rejected(Answer(403, [("content-type", "text/html; charset=UTF-8")], body,
                                  check="header:metadata-flavor"))
        token = read_token(self.token_file)
        if not token:
            raise Rejected(Answer(503, [("content-type", "text/plain")], b"no token\n", check="mock:token-file"))
        value = {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        return json_answer(200, value, [("metadata-flavor", "Google")])


def read_token(path):
    """The token in `path`, stripped; empty if the file is missing."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# An identity provider: its JWKS (what Envoy's jwt_authn fetches), and tokens on request


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_uint(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Idp:
    """GET /jwks.json: the public keys. POST /token {claims, alg (RS256, ES256 or none), kid,
    tamper}: a signed token (`tamper` flips the payload after signing). POST /rotate {keep}:
    new keys, the old ones kept in the JWKS or not. Keys are made here with `cryptography`."""

    kind = "idp"

    def __init__(self, args):
        self.lock = threading.Lock()
        self.generation = 0
        self.keys = {}
        self.rotate(keep=False)

    def rotate(self, keep):
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        with self.lock:
            self.generation += 1
            g = self.generation
            fresh = {f"rsa-{g}": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                     f"ec-{g}": ("ES256", ec.generate_private_key(ec.SECP256R1()))}
            self.keys = {**self.keys, **fresh} if keep else fresh
            return sorted(self.keys)

    def jwks(self):
        out = []
        with self.lock:
            for kid, (alg, key) in self.keys.items():
                pub = key.public_key().public_numbers()
                if alg == "RS256":
                    out.append({"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
                                "n": b64url_uint(pub.n), "e": b64url_uint(pub.e)})
                else:
                    out.append({"kty": "EC", "kid": kid, "alg": alg, "use": "sig", "crv": "P-256",
                                "x": b64url(pub.x.to_bytes(32, "big")), "y": b64url(pub.y.to_bytes(32, "big"))})
        return {"keys": out}

    def token(self, spec):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        alg = spec.get("alg", "RS256")
        with self.lock:
            kid = spec.get("kid") or next((k for k, (a, _) in self.keys.items() if a == alg), None)
            entry = self.keys.get(kid)
        header = {"alg": alg, "typ": "JWT"}
        if alg != "none":
            header["kid"] = kid
        signing_input = f"{b64url(compact(header).encode())}.{b64url(compact(spec['claims']).encode())}"
        if alg == "none":
            signature = b""
        elif entry is None:
            raise Rejected(json_answer(400, {"error": f"no {alg} key"}, check="mock:no-key"))
        elif alg == "RS256":
            signature = entry[1].sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s_ = decode_dss_signature(entry[1].sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
        if spec.get("tamper"):
            forged = dict(spec["claims"], groups=["admin"])
            signing_input = f"{signing_input.split('.')[0]}.{b64url(compact(forged).encode())}"
        return f"{signing_input}.{b64url(signature)}"

    def answer(self, req):
        if req.method == "GET" and req.route == "/jwks.json":
            return json_answer(200, self.jwks())
        if req.method == "POST" and req.route == "/token":
            return json_answer(200, {"token": self.token(json.loads(req.body))})
        if req.method == "POST" and req.route == "/rotate":
            spec = json.loads(req.body or b"{}")
            return json_answer(200, {"kids": self.rotate(bool(spec.get("keep")))})
        raise Rejected(json_answer(404, {"error": "not found"}, check="path"))


# ---------------------------------------------------------------------------------------------
# HTTP server and the record


class Recorder:
    """Appends one JSON line per request, flushed at once (threads share one file)."""

    def __init__(self, path, kind):
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0
        self._kind = kind

    def write(self, req, answer):
        with self._lock:
            self._seq += 1
            line = {
                "seq": self._seq,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "kind": self._kind,
                "method": req.method,
                "path": req.path,
                "headers": [[k, v] for k, v in req.headers],
                "body_b64": base64.b64encode(req.body).decode(),
                "status": answer.status,
                "scenario": answer.scenario or req.header("x-mock-scenario") or "ok",
                "model": answer.model,
                "usage": answer.usage,
                "check": answer.check,
                "error": answer.error,
                "detail": answer.detail,
            }
            self._file.write(compact(line) + "\n")
            self._file.flush()


class BodyError(Exception):
    pass


def read_body(rfile, headers):
    """The request body, content-length or chunked, bounded by MAX_BODY."""
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        parts, size = [], 0
        while True:
            line = rfile.readline(1024)
            try:
                n = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BodyError("bad chunk size") from None
            size += n
            if size > MAX_BODY:
                raise BodyError("body too large")
            if n == 0:
                while rfile.readline(8192).strip():  # trailers, then the empty line
                    pass
                return b"".join(parts)
            parts.append(rfile.read(n))
            rfile.readline(8)
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise BodyError("bad content-length") from None
    if length > MAX_BODY:
        raise BodyError("body too large")
    return rfile.read(length)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vendor-mock"
    sys_version = ""
    timeout = IO_TIMEOUT_S

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # the record file is the log

    def handle_one(self):
        try:
            body = read_body(self.rfile, self.headers)
        except BodyError as e:
            self.send_error(413 if "large" in str(e) else 400)
            self.close_connection = True
            return
        req = Request(self.command, self.path, list(self.headers.items()), body)
        try:
            answer = self.server.vendor.answer(req)
        except Rejected as rejected:
            answer = rejected.answer
        except Exception as e:  # a mock bug: answered and recorded, so the test sees it
            traceback.print_exc()
            answer = json_answer(500, {"message": f"mock crashed: {e!r}"}, check="mock:crash")
        self.server.recorder.write(req, answer)
        self.send(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_one

    def send(self, answer):
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.pieces is None:
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        pause = getattr(self.server.vendor, "pause", 0)
        for piece in answer.pieces:
            if piece:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(pause)  # so each piece reaches the peer on its own
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):  # a peer leaving is normal
            super().handle_error(request, client_address)


VENDORS = {"bedrock": Bedrock, "bedrock-messages": BedrockMessages, "vertex": Vertex, "foundry": Foundry,
           "gcp-metadata": GcpMetadata, "idp": Idp}


def serve(args):
    server = Server(("127.0.0.1", 0), Handler)
    server.vendor = VENDORS[args.kind](args)
    server.recorder = Recorder(args.record, args.kind)
    # Blocked before any thread starts (threads inherit the mask), so the main thread takes
    # SIGTERM at once in sigtimedwait; the timeout ends a leaked mock by itself.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    print(f"port {server.server_address[1]}", flush=True)
    signal.sigtimedwait(stop_signals, args.max_seconds)
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------------
# Self-test: the SigV4 check and the event-stream encoder against botocore


def self_test():
    from botocore.eventstream import ChecksumMismatch, EventStreamBuffer, InvalidPayloadLength

    results = []

    def check(name, ok):
        results.append((name, bool(ok)))
        print(f"{'ok  ' if ok else 'FAIL'} {name}", flush=True)

    creds = {"access_key": "AKIDSELFTEST", "secret_key": "self-test-secret", "region": "us-east-1",
             "service": "bedrock", "session_token": None}

    def signed(path, body, extra=(), secret=creds["secret_key"], region="us-east-1"):
        """A request as botocore's own signer (the SDKs') produces it, as the mock receives it."""
        aws = AWSRequest(method="POST", url=f"http://127.0.0.1:9{path}", data=body)
        aws.headers["host"] = "127.0.0.1:9"
        aws.headers["content-type"] = "application/json"
        aws.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
        for k, v in extra:
            aws.headers[k] = v
        SigV4Auth(Credentials(creds["access_key"], secret), "bedrock", region).add_auth(aws)
        return Request("POST", path, list(aws.headers.items()), body)

    def verdict(req):
        try:
            verify_sigv4(req, creds)
            return None
        except Rejected as r:
            return r.answer.check

    def with_header(req, name, value):
        kept = [(k, v) for k, v in req.headers if k.lower() != name]
        return Request(req.method, req.path, kept + [(name, value)], req.body)

    body = compact({"anthropic_version": BEDROCK_VERSION, "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}]}).encode()
    plain = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    arn = "/model/arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile%2Fabc123/invoke-with-response-stream"

    for label, path in (("model id with ':'", plain), ("ARN with %2F", arn)):
        req = signed(path, body, [("user-agent", "self-test")])
        check(f"botocore-signed request verifies ({label})", verdict(req) is None)
        check(f"tampered body is refused ({label})",
              verdict(Request("POST", path, req.headers, body + b" ")) == "sigv4:content-sha256")
        re_hashed = with_header(Request("POST", path, req.headers, body.replace(b"16", b"17")),
                                "x-amz-content-sha256", hashlib.sha256(body.replace(b"16", b"17")).hexdigest())
        check(f"tampered body with its hash is refused ({label})", verdict(re_hashed) == "sigv4:signature")
        check(f"tampered signed header is refused ({label})",
              verdict(with_header(req, "content-type", "text/plain")) == "sigv4:signature")
        check(f"unsigned header may change ({label})", verdict(with_header(req, "user-agent", "other")) is None)
        twice = path.replace(":", "%3A") if label.startswith("model") else path.replace("%2F", "%252F")
        check(f"path encoded differently is refused ({label})",
              verdict(Request("POST", twice, req.headers, body)) == "sigv4:signature")
        check(f"wrong secret is refused ({label})", verdict(signed(path, body, secret="other")) == "sigv4:signature")
        check(f"wrong region scope is refused ({label})", verdict(signed(path, body, region="eu-west-1")) == "sigv4:scope")
    req = signed(plain, body)
    check("missing authorization is refused", verdict(Request("POST", plain, [("host", "h")], body)) == "sigv4:missing")
    check("x-amz-date moved by a second is refused",
          verdict(with_header(req, "x-amz-date", bump_second(req.header("x-amz-date")))) == "sigv4:signature")
    check("UNSIGNED-PAYLOAD is refused", verdict(with_header(req, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
          == "sigv4:content-sha256")
    old = signed(plain, body)
    check("a signature older than 15 minutes is refused",
          verdict_at(old, creds, datetime.now(timezone.utc) + timedelta(minutes=20)) == "sigv4:expired")
    # The canonical URI botocore computes over the wire path equals Envoy's (each byte outside
    # unreserved percent-encoded again, per segment), so Envoy-signed requests verify too.
    for path in (plain, arn):
        envoy_uri = "/".join(envoy_encode(s) for s in path.split("/"))
        botocore_uri = SigV4Auth(None, "", "")._normalize_url_path(path)
        check(f"canonical URI matches Envoy's encoding ({path[:40]}...)", botocore_uri == envoy_uri)

    # Event stream: the real frame from cloud-vendors.md §1.7 (prelude 00 00 00 bc 00 00 00 4b 51 1b a2 64).
    real = encode_frame([(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
                        b'{"bytes":"eyJ0eXBlIjoiY29udGVudF9ibG9ja19zdG9wIiwiaW5kZXgiOjB9","p":"abcdefghijklmnopqrstuvwxyz"}')
    check("encoder reproduces the captured Bedrock prelude", real[:12] == bytes.fromhex("000000bc0000004b511ba264"))
    rng = random.Random(7)
    usage = Usage({"messages": [{"role": "user", "content": "hi"}]}, Request("POST", "/", [], b""))
    events = stream_events("msg_bdrk_01x", "claude-sonnet-4-5-20250929", usage)
    for scenario in ("ok", "exception:throttlingException"):
        frames, _ = Bedrock.scenario_frames(events, usage, scenario, rng)
        data, starts = joined(frames)
        pieces = cut(data, starts, rng)
        decoded = decode_all(EventStreamBuffer, pieces)
        check(f"botocore decodes every frame of a cut stream ({scenario})", len(decoded) == len(frames))
        check(f"the stream was cut inside a prelude ({scenario})", any(
            s < c < s + 12 for c in accumulate_lengths(pieces) for s in starts))
        if scenario == "ok":
            got = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in decoded]
            check("payloads round-trip to the Anthropic events", got == events)
            check("headers are chunk/event", all(m.headers[":event-type"] == "chunk" and m.headers[":message-type"]
                                                  == "event" for m in decoded))
        else:
            last = decoded[-1]
            check("exception frame decodes", last.headers[":message-type"] == "exception"
                  and last.headers[":exception-type"] == "throttlingException"
                  and "message" in json.loads(last.payload))
    frames, _ = Bedrock.scenario_frames(events, usage, "crc", rng)
    check("botocore rejects the broken CRC", raises(lambda: decode_all(EventStreamBuffer, [b"".join(frames)]),
                                                    ChecksumMismatch))
    frames, _ = Bedrock.scenario_frames(events, usage, "oversize", rng)
    check("botocore rejects the 32 MiB prelude", raises(lambda: decode_all(EventStreamBuffer, [b"".join(frames)]),
                                                        InvalidPayloadLength))
    frames, _ = Bedrock.scenario_frames(events, usage, "truncate", rng)
    check("a truncated stream decodes short", len(decode_all(EventStreamBuffer, [b"".join(frames)])) == len(frames) - 1)

    # Bedrock body checks.
    ok_body = json.loads(body)
    no_version = {k: v for k, v in ok_body.items() if k != "anthropic_version"}
    for bad, want in ((dict(ok_body, model="x"), "body:extraneous-key"),
                      (dict(ok_body, stream=True), "body:extraneous-key"),
                      (no_version, "body:anthropic_version"),
                      (dict(ok_body, anthropic_version="2023-06-01"), "body:anthropic_version"),
                      (dict(ok_body, anthropic_beta=["prompt-caching-2024-07-31"]), "body:anthropic_beta")):
        check(f"invoke body check {want}", raises_check(lambda b=bad: check_invoke_body(b, ACCEPTED_BETAS)) == want)
    check("a valid invoke body passes", raises_check(lambda: check_invoke_body(
        dict(ok_body, anthropic_beta=["interleaved-thinking-2025-05-14"]), ACCEPTED_BETAS)) is None)

    failed = [name for name, ok in results if not ok]
    print(f"self-test: {len(results) - len(failed)} of {len(results)} checks ok", flush=True)
    return 1 if failed else 0


def verdict_at(req, creds, now):
    try:
        verify_sigv4(req, creds, now)
        return None
    except Rejected as r:
        return r.answer.check


def bump_second(amz_date):
    t = datetime.strptime(amz_date, SIGV4_TIMESTAMP) + timedelta(seconds=1)
    return t.strftime(SIGV4_TIMESTAMP)


def envoy_encode(segment):
    """Envoy's encodePathSegment for non-S3 services: every byte but [A-Za-z0-9-._~] as %XX."""
    safe = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in segment.encode())


def decode_all(buffer_class, pieces):
    buffer, messages = buffer_class(), []
    for piece in pieces:
        buffer.add_data(piece)
        messages.extend(buffer)
    return messages


def accumulate_lengths(pieces):
    total, cuts = 0, []
    for piece in pieces[:-1]:
        total += len(piece)
        cuts.append(total)
    return cuts


def raises(fn, exc_type):
    try:
        fn()
    except exc_type:
        return True
    return False


def raises_check(fn):
    try:
        fn()
    except Rejected as r:
        return r.answer.check
    return None


# ---------------------------------------------------------------------------------------------


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(VENDORS))
    p.add_argument("--record", help="JSON-lines file every request is appended to")
    p.add_argument("--self-test", action="store_true", help="check the SigV4 check and the encoder, then exit")
    p.add_argument("--pause-ms", type=float, default=2.0, help="pause after each streamed piece (max 50)")
    p.add_argument("--max-seconds", type=float, default=3600, help="exit after this long in any case")
    p.add_argument("--betas", help="accepted beta flags, comma-separated (bedrock, vertex, foundry)")
    aws = p.add_argument_group("bedrock, bedrock-messages (--service bedrock-mantle for Mantle)")
    aws.add_argument("--access-key", default="AKIDMOCKBEDROCK")
    aws.add_argument("--secret-key", default="mock-secret-key")
    aws.add_argument("--session-token", help="require this x-amz-security-token (signed)")
    aws.add_argument("--region", help="bedrock: signing region (us-east-1); vertex: location (us-east5)")
    aws.add_argument("--service", default="bedrock")
    gcp = p.add_argument_group("vertex, gcp-metadata")
    gcp.add_argument("--token", help="the expected bearer token")
    gcp.add_argument("--token-file", help="file holding the token, re-read on each request")
    gcp.add_argument("--project", default="mock-project")
    az = p.add_argument_group("foundry")
    az.add_argument("--api-key")
    az.add_argument("--deployments", help="deployment names, comma-separated")
    args = p.parse_args(argv)
    if args.self_test:
        return self_test()
    if not args.kind or not args.record:
        p.error("--kind and --record are required")
    args.pause_ms = max(0.0, min(args.pause_ms, 50.0))
    if args.region is None:
        args.region = "us-east5" if args.kind == "vertex" else "us-east-1"
    serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
