"""Usage report per cost center, model and day from the gateway's audit log.

    python report/report.py <access-log> [--json]

Runs report/usage.sql with DuckDB over the JSON lines Envoy writes (make run prints them on
standard output); lines that are not audit records are ignored.
"""

import argparse
import json
import pathlib

import duckdb

SQL = pathlib.Path(__file__).with_name("usage.sql").read_text()

# The audit record columns the report reads, with their types (README.md, "Audit record").
COLUMNS = {
    "timestamp": "TIMESTAMP",
    "gen_ai.operation.name": "VARCHAR",
    "gen_ai.request.model": "VARCHAR",
    "gen_ai.response.model": "VARCHAR",
    "price": "VARCHAR",
    "cost_center": "VARCHAR",
    "gen_ai.usage.input_tokens": "UBIGINT",
    "gen_ai.usage.cache_creation.input_tokens": "UBIGINT",
    "cache_creation_5m_input_tokens": "UBIGINT",
    "cache_creation_1h_input_tokens": "UBIGINT",
    "gen_ai.usage.cache_read.input_tokens": "UBIGINT",
    "gen_ai.usage.output_tokens": "UBIGINT",
    "cost_micro_usd": "UBIGINT",
    "cache_savings_micro_usd": "BIGINT",
}


def report(log: str) -> list[dict]:
    con = duckdb.connect()
    quote = lambda s: "'" + s.replace("'", "''") + "'"
    columns = ", ".join(f"{quote(k)}: {quote(v)}" for k, v in COLUMNS.items())
    con.execute(
        f"CREATE VIEW audit AS SELECT * FROM read_json({quote(log)}, "
        f"format = 'newline_delimited', ignore_errors = true, columns = {{{columns}}})"
    )
    cursor = con.execute(SQL)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("access_log")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    rows = report(args.access_log)
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    if not rows:
        print("no audit records")
        return
    names = list(rows[0])
    cells = [[str(row[n]) for n in names] for row in rows]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


if __name__ == "__main__":
    main()
