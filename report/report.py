"""Usage, tool-call, secrets and session reports from the gateway's audit log.

    python report/report.py <access-log>
        [--report usage|tools|tool_results|secrets|sessions|agents|all] [--json]
        [--html <out.html>] [--session <id>]

Runs the SQL in report/ with DuckDB over the JSON lines Envoy writes (make run prints them on
standard output); lines that are not audit records are ignored, and records from older gateways
without `tool_calls`, `tool_results` or `secrets` count as having none. The reports:

    usage         per cost center, model and day: requests, tokens per bucket, cost, cache hit
                  ratio and savings (usage.sql; chat requests only)
    tools         tool calls by tool and risk tag per consumer and day (tools.sql, 1st query)
    tool_results  tool results by tool per consumer and day: results and bytes (tools.sql, 2nd)
    secrets       secrets found per rule and action per consumer and day (secrets.sql)
    sessions      the 20 costliest sessions: requests, agents, cost, cache hit ratio
                  (sessions.sql, 1st query)
    agents        the agent tree of one session, parents first: each agent's requests, cost
                  and tokens per bucket (sessions.sql, 2nd; `--session`, else the costliest)

`--report all` (the default) prints every report, each under its title; `--json` prints one JSON
object per row instead, with the report's name under the key "report". `--html` also writes a
self-contained HTML page of charts (html_report.py) and prints its path on standard error.
"""

import argparse
import json
import pathlib
import sys

import duckdb

HERE = pathlib.Path(__file__).parent

# name: (title, SQL file, index of the statement in that file)
REPORTS = {
    "usage": ("usage per cost center, model and day", "usage.sql", 0),
    "tools": ("tool calls by tool and risk tag per consumer and day", "tools.sql", 0),
    "tool_results": ("tool results by tool per consumer and day", "tools.sql", 1),
    "secrets": ("secrets found per rule per consumer and day", "secrets.sql", 0),
    "sessions": ("the 20 costliest sessions", "sessions.sql", 0),
    "agents": ("the agent tree of one session", "sessions.sql", 1),
}

# The HTML report's other queries (html_report.py), by name: (SQL file, index of the statement).
CHARTS = {
    "overview": ("overview.sql", 0),
    "spend": ("spend.sql", 0),
    "tokens": ("spend.sql", 1),
    "cache_hits": ("cache.sql", 0),
    "cache_misses": ("cache.sql", 1),
}

# The audit record columns the reports read, with their types (README.md, "Audit record").
COLUMNS = {
    "timestamp": "TIMESTAMP",
    "gen_ai.operation.name": "VARCHAR",
    "gen_ai.request.model": "VARCHAR",
    "gen_ai.response.model": "VARCHAR",
    "price": "VARCHAR",
    "cost_center": "VARCHAR",
    "virtual_key": "VARCHAR",
    "gen_ai.usage.input_tokens": "UBIGINT",
    "gen_ai.usage.cache_creation.input_tokens": "UBIGINT",
    "cache_creation_5m_input_tokens": "UBIGINT",
    "cache_creation_1h_input_tokens": "UBIGINT",
    "gen_ai.usage.cache_read.input_tokens": "UBIGINT",
    "gen_ai.usage.output_tokens": "UBIGINT",
    "cost_micro_usd": "UBIGINT",
    "cache_savings_micro_usd": "BIGINT",
    "tool_calls": "STRUCT(tool VARCHAR, count UBIGINT, programs VARCHAR[], "
    "risks STRUCT(tag VARCHAR, count UBIGINT)[], truncated UBIGINT, incomplete UBIGINT)[]",
    "tool_results": "STRUCT(tool VARCHAR, count UBIGINT, bytes UBIGINT)[]",
    "secrets": "STRUCT(rule VARCHAR, action VARCHAR, count UBIGINT, locations VARCHAR[])[]",
    "session.id": "VARCHAR",
    "agent_id": "VARCHAR",
    "parent_agent_id": "VARCHAR",
    "cache_miss_reason": "VARCHAR",
    "cache_verdict": "VARCHAR",
    "idle_ms": "UBIGINT",
}


def connect(log: str) -> duckdb.DuckDBPyConnection:
    """A connection with the log as the view `audit`."""
    con = duckdb.connect()
    quote = lambda s: "'" + s.replace("'", "''") + "'"
    columns = ", ".join(f"{quote(k)}: {quote(v)}" for k, v in COLUMNS.items())
    con.execute(
        f"CREATE VIEW audit AS SELECT * FROM read_json({quote(log)}, "
        f"format = 'newline_delimited', ignore_errors = true, columns = {{{columns}}})"
    )
    return con


def report(
    log: str,
    name: str = "usage",
    con: duckdb.DuckDBPyConnection | None = None,
    session: str | None = None,
) -> list[dict]:
    """The rows of one report or chart; `session` fills `$session` where a query has it."""
    con = con or connect(log)
    file, index = CHARTS[name] if name in CHARTS else REPORTS[name][1:]
    statement = con.extract_statements((HERE / file).read_text())[index]
    params = {"session": session} if "session" in statement.named_parameters else None
    cursor = con.execute(statement.query, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    names = list(rows[0])
    cells = [[str(row[n]) for n in names] for row in rows]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    lines = [names] + cells
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() for c in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("access_log")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument(
        "--report", choices=[*REPORTS, "all"], default="all", help="which report (default all)"
    )
    parser.add_argument("--html", metavar="OUT", help="also write the HTML report to OUT")
    parser.add_argument("--session", help="the session of the agent tree (default the costliest)")
    args = parser.parse_args()
    names = list(REPORTS) if args.report == "all" else [args.report]
    con = connect(args.access_log)
    for i, name in enumerate(names):
        rows = report(args.access_log, name, con, args.session)
        if args.json:
            for row in rows:
                print(json.dumps({"report": name, **row}, default=str))
            continue
        if i:
            print()
        print(REPORTS[name][0])
        print(table(rows))
    if args.html:
        write_html(args.access_log, args.html, con, args.session)


def write_html(log: str, out: str, con: duckdb.DuckDBPyConnection, session: str | None) -> None:
    """The HTML report, from the same queries; its path goes to stderr, so --json stays clean."""
    # Imported here: the text and JSON reports need DuckDB alone, not Plotly.
    import html_report

    page = html_report.page(lambda name: report(log, name, con, session))
    pathlib.Path(out).write_text(page, encoding="utf-8")
    print(f"HTML report: {out} ({len(page.encode()) // 1024} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
