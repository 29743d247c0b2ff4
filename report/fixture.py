"""A synthetic audit log for `make report-check`, so the HTML report is tested on every chart.

    python report/fixture.py <out.log>

About 200 records over 3 days, written as the gateway writes them (one JSON object a line):
chat requests from 5 Claude Code sessions in 3 cost centers on 3 models, one session with
subagents two levels deep, cache hits and misses with their diagnosis; chat requests outside
any session from an older gateway (none of the session and cache-diagnosis fields); other
operations (count_tokens, model listing) and Envoy's own lines, which the charts must leave
out; lines that are not JSON, which the reports must ignore. One client sends a model name
with markup in it, which the page must show as text. Seeded: the same log on every run.
"""

import argparse
import datetime as dt
import json
import random
from dataclasses import dataclass, field

START = dt.datetime(2026, 10, 5, tzinfo=dt.timezone.utc)
DAYS = 3

# Price entry: (model that answers, USD per MTok input / 5m write / 1h write / read / output).
MODELS = {
    "claude-opus-4-8": ("claude-opus-4-8-20260901", (5.0, 6.25, 10.0, 0.50, 25.0)),
    "claude-sonnet-4-6": ("claude-sonnet-4-6-20260115", (3.0, 3.75, 6.0, 0.30, 15.0)),
    "claude-haiku-4-5": ("claude-haiku-4-5-20251001", (1.0, 1.25, 2.0, 0.10, 5.0)),
}
HOSTILE_MODEL = 'claude-"><img src=x onerror=alert(1)><script>alert(2)</script>'
FIVE_MINUTES_MS = 5 * 60 * 1000
NOT_JSON = [
    "[2026-10-05 00:00:01.000][1][info][main] starting main dispatch loop",
    "{truncated json",
    "",
    "claude_gateway: plugin configured",
]


@dataclass
class Agent:
    """One conversation: a session's main agent or a subagent, with its cached context."""

    agent_id: str | None
    parent_agent_id: str | None
    model: str
    turns: int
    context: int = 0
    last_ms: int | None = None
    ttl_1h: bool = False


@dataclass
class Session:
    session_id: str
    cost_center: str | None
    virtual_key: str
    start: dt.datetime
    agents: list[Agent] = field(default_factory=list)


def hex_id(rng: random.Random, bits: int = 128) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def uuid(rng: random.Random) -> str:
    h = hex_id(rng)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sessions(rng: random.Random) -> list[Session]:
    """Five sessions over the three days; the first spawns subagents, two of which spawn more."""
    plan = [
        ("platform", 0, 9),
        ("research & data", 0, 14),
        ("support", 1, 10),
        ("platform", 1, 16),
        ("research & data", 2, 11),
    ]
    out = []
    for i, (center, day, hour) in enumerate(plan):
        start = START + dt.timedelta(days=day, hours=hour, minutes=rng.randrange(60))
        s = Session(uuid(rng), center, f"vk-{center.split()[0]}-{i % 2 + 1}", start)
        model = "claude-opus-4-8" if i % 2 == 0 else "claude-sonnet-4-6"
        s.agents.append(Agent(None, None, model, 30 if i == 0 else 18, ttl_1h=i == 0))
        out.append(s)
    explore, plan_agent = hex_id(rng, 64), hex_id(rng, 64)
    out[0].agents += [
        Agent(explore, None, "claude-sonnet-4-6", 10),
        Agent(plan_agent, None, "claude-sonnet-4-6", 8),
        Agent(hex_id(rng, 64), explore, "claude-haiku-4-5", 7),
        Agent(hex_id(rng, 64), explore, "claude-haiku-4-5", 5),
        Agent(hex_id(rng, 64), plan_agent, "claude-haiku-4-5", 4),
    ]
    return out


def usage(
    rng: random.Random, agent: Agent, idle_ms: int | None
) -> tuple[dict, str | None, str | None]:
    """The next turn's token buckets and its cache diagnosis (Anthropic's, the gateway's): the
    first turn writes the prompt, a turn after the 5m TTL or a changed prompt writes it again."""
    delta, output = rng.randrange(300, 4000), rng.randrange(80, 2500)
    reason, verdict = None, None
    if idle_ms is None:
        read, write = 0, rng.randrange(9000, 22000)
    elif idle_ms > FIVE_MINUTES_MS and not agent.ttl_1h:
        read, write = 0, agent.context + delta
        reason, verdict = rng.choice([None, "previous_message_not_found"]), "ttl_expired"
    elif rng.random() < 0.12:
        read, write = 0, agent.context + delta
        reason = rng.choice(["system_changed", "tools_changed", "messages_changed", "pending"])
        verdict = reason if reason.endswith("_changed") else "unexplained"
    else:
        read, write, verdict = agent.context, delta, "hit"
    agent.context = min(read + write + output, 150_000)
    buckets = {
        "input": rng.randrange(1, 60),
        "write_1h": write if agent.ttl_1h else 0,
        "write_5m": 0 if agent.ttl_1h else write,
        "read": read,
        "output": output,
    }
    return buckets, reason, verdict


def cost(price: str | None, b: dict) -> tuple[int, int]:
    """Cost and cache savings in micro-USD: a rate in USD per MTok is micro-USD per token."""
    if price is None:
        return 0, 0
    r_in, r_5m, r_1h, r_read, r_out = MODELS[price][1]
    cached = b["write_5m"] * r_5m + b["write_1h"] * r_1h + b["read"] * r_read
    total = b["input"] * r_in + cached + b["output"] * r_out
    plain = (b["write_5m"] + b["write_1h"] + b["read"]) * r_in
    return round(total), round(plain - cached)


def record(rng: random.Random, t: dt.datetime, price: str | None, b: dict, **extra) -> dict:
    """A chat record with the fields the gateway writes; `extra` sets or adds the rest."""
    micro, savings = cost(price, b)
    r = {
        "timestamp": stamp(t),
        "request_id": uuid(rng),
        "session.id": None,
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "http.request.method": "POST",
        "url.path": "/v1/messages",
        "http.response.status_code": 200,
        "gen_ai.request.model": price,
        "gen_ai.response.model": MODELS[price][0] if price else None,
        "gen_ai.response.id": "msg_" + hex_id(rng, 96),
        "gen_ai.response.finish_reasons": [rng.choice(["end_turn", "tool_use", "tool_use"])],
        "stream": True,
        "gen_ai.usage.input_tokens": b["input"],
        "gen_ai.usage.cache_creation.input_tokens": b["write_5m"] + b["write_1h"],
        "cache_creation_5m_input_tokens": b["write_5m"],
        "cache_creation_1h_input_tokens": b["write_1h"],
        "gen_ai.usage.cache_read.input_tokens": b["read"],
        "gen_ai.usage.output_tokens": b["output"],
        "web_search_requests": 0,
        "web_fetch_requests": 0,
        "cost_micro_usd": micro,
        "cache_savings_micro_usd": savings,
        "price": price,
        "usage_status": "complete",
        "route": "anthropic",
        "upstream_cluster": "anthropic",
        "upstream_host": "192.0.2.10:443",
        "attempts": 1,
        "virtual_key": None,
        "cost_center": None,
        "key_alias": rng.choice(["pool-a", "pool-b"]),
        "ttft_ms": rng.randrange(400, 3000),
        "duration_ms": rng.randrange(2000, 60000),
        "cache_markers_added": rng.choice([0, 0, 1, 2]),
        "tool_calls": tool_calls(rng),
        "tool_results": [{"tool": "Read", "count": 2, "bytes": rng.randrange(500, 40000)}],
        "secrets": [],
    }
    return {**r, **extra}


def tool_calls(rng: random.Random) -> list[dict]:
    """None, a plain shell call, or one the gateway tagged, so the tools report has rows."""
    bash = {"tool": "Bash", "count": 1, "programs": ["git"], "risks": [], "truncated": 0,
            "incomplete": 0}
    risky = {**bash, "programs": ["rm"], "risks": [{"tag": "destructive", "count": 1}]}
    return rng.choice([[], [bash], [risky]])


def session_records(rng: random.Random, s: Session) -> list[dict]:
    """Every agent's turns, each agent starting a few minutes after its parent's first turn."""
    out = []
    for i, agent in enumerate(s.agents):
        t = s.start + dt.timedelta(minutes=4 * i)
        for turn in range(agent.turns):
            t += dt.timedelta(seconds=rng.randrange(20, 240))
            if turn and rng.random() < 0.1:
                t += dt.timedelta(minutes=rng.randrange(8, 40))
            now_ms = int(t.timestamp() * 1000)
            idle = None if agent.last_ms is None else now_ms - agent.last_ms
            agent.last_ms = now_ms
            b, reason, verdict = usage(rng, agent, idle)
            out.append(record(
                rng, t, agent.model, b, **{
                    "session.id": s.session_id, "cost_center": s.cost_center,
                    "virtual_key": s.virtual_key, "agent_id": agent.agent_id,
                    "parent_agent_id": agent.parent_agent_id, "cache_miss_reason": reason,
                    "cache_verdict": verdict, "idle_ms": idle,
                }))
    return out


def sessionless_records(rng: random.Random, n: int) -> list[dict]:
    """Scripted SDK calls through an older gateway: no session, no cache-diagnosis fields."""
    out = []
    for _ in range(n):
        t = START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
        b = {"input": rng.randrange(200, 3000), "write_5m": 0, "write_1h": 0, "read": 0,
             "output": rng.randrange(50, 800)}
        center = rng.choice(["platform", "research & data", "support", None])
        out.append(record(rng, t, "claude-haiku-4-5", b, cost_center=center,
                          virtual_key=f"vk-batch-{rng.randrange(1, 3)}"))
    out[0]["secrets"] = [{"rule": "aws-access-key", "action": "redact", "count": 1,
                          "locations": ["messages[0].content[0].text"]}]
    return out


def other_records(rng: random.Random) -> list[dict]:
    """Requests the charts leave out: token counts, model listing, Envoy's own lines; and one
    chat request with a hostile model name (no price, so it costs 0)."""
    zero = {"input": 0, "write_5m": 0, "write_1h": 0, "read": 0, "output": 0}
    out = []
    for i in range(16):
        t = START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
        op, path, method = [("count_tokens", "/v1/messages/count_tokens", "POST"),
                            (None, "/v1/models", "GET")][i % 2]
        b = {**zero, "input": rng.randrange(1000, 90000)} if op else zero
        out.append(record(rng, t, "claude-sonnet-4-6", b, **{
            "gen_ai.operation.name": op, "url.path": path, "http.request.method": method,
            "cost_micro_usd": 0, "cache_savings_micro_usd": 0, "cost_center": "platform"}))
    for _ in range(2):
        t = START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
        out.append({"timestamp": stamp(t), "request_id": uuid(rng), "http.request.method": "POST",
                    "url.path": "/v1/messages", "http.response.status_code": 503,
                    "response_flags": "UH", "gateway_record": "none"})
    t = START + dt.timedelta(days=1, hours=3)
    out.append(record(rng, t, None, {**zero, "input": 12}, **{
        "gen_ai.request.model": HOSTILE_MODEL, "http.response.status_code": 404,
        "usage_status": "missing", "error.type": "not_found_error", "cost_center": "support"}))
    return out


def lines(seed: int = 7) -> list[str]:
    """The log's lines in time order, the non-JSON ones spread among them."""
    rng = random.Random(seed)
    records = [r for s in sessions(rng) for r in session_records(rng, s)]
    records += sessionless_records(rng, 40) + other_records(rng)
    records.sort(key=lambda r: r["timestamp"])
    out = [json.dumps(r, separators=(",", ":")) for r in records]
    for i, junk in enumerate(NOT_JSON):
        out.insert(i * len(out) // len(NOT_JSON), junk)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    args = parser.parse_args()
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines()) + "\n")


if __name__ == "__main__":
    main()
