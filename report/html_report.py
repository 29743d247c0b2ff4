"""The HTML report: one self-contained page of Plotly charts for people who would rather look.

report.py calls `page(rows)` with `rows(name)` running one of its queries (report/*.sql,
so a warehouse can draw the same charts from the same SQL). plotly.js is inlined once in the
page's head: it opens offline, from a file or a mail attachment. Every string from the log is
escaped, in the page and in the charts (Plotly reads its labels as HTML). The `<body>`
carries the number of charts (`data-charts`), which report/check.mjs checks. Not named
`html.py`: next to report.py, that would shadow the standard library's `html`.
"""

import html
from collections.abc import Callable, Iterable

import plotly.graph_objects as go
import plotly.io
import plotly.offline

Rows = Callable[[str], list[dict]]

# Token bucket columns, as the queries name them, and their labels.
BUCKETS = {
    "input_tokens": "input",
    "cache_write_5m_tokens": "cache write 5m",
    "cache_write_1h_tokens": "cache write 1h",
    "cache_read_tokens": "cache read",
    "output_tokens": "output",
}
SOURCES = {
    "anthropic": "Anthropic's diagnosis (cache_miss_reason)",
    "gateway": "the gateway's verdict (cache_verdict, hits too)",
}
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
section { margin: 2.5em 0; }
table { border-collapse: collapse; font-size: 0.9em; margin-top: 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td:first-child { font-family: ui-monospace, monospace; white-space: pre; }
"""


def esc(value: object) -> str:
    """HTML-escaped text of a value from the log (None shows as an empty cell)."""
    return html.escape("" if value is None else str(value))


def label(value: object) -> str:
    """A string from the log as a chart label: Plotly reads labels as HTML of its own, so
    markup in them is escaped, but not quotes (no tag can form, and Plotly knows no &quot;)."""
    return html.escape(str(value), quote=False)


def usd(value: float) -> str:
    return f"${value:,.2f}"


def ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def figure(traces: list, title_x: str, title_y: str, **layout) -> go.Figure:
    """A chart, or, without data, an empty one that says so rather than a blank frame."""
    fig = go.Figure(traces)
    fig.update_layout(height=440, margin={"t": 30}, xaxis_title=title_x, yaxis_title=title_y,
                      legend={"orientation": "h", "y": -0.2}, **layout)
    if not traces:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.add_annotation(text="no data", showarrow=False, font={"size": 20},
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def spend(rows: list[dict]) -> go.Figure:
    """Stacked bars: a day's spend, one color per cost center."""
    days = sorted({str(r["day"]) for r in rows})
    centers = sorted({r["cost_center"] for r in rows})
    cost = {(str(r["day"]), r["cost_center"]): r["cost_usd"] for r in rows}
    traces = [go.Bar(name=label(c), x=days, y=[cost.get((d, c), 0) for d in days])
              for c in centers]
    return figure(traces, "day", "USD", barmode="stack", xaxis_type="category",
                  yaxis_tickprefix="$")


def tokens(rows: list[dict]) -> go.Figure:
    """Stacked bars: each model's tokens, one color per bucket."""
    models = [label(r["model"]) for r in rows]
    traces = [go.Bar(name=bucket, x=models, y=[r[col] for r in rows])
              for col, bucket in BUCKETS.items()] if rows else []
    return figure(traces, "model", "tokens", barmode="stack")


def cache_hits(rows: list[dict]) -> go.Figure:
    """The share of prompt tokens read from the cache, hour by hour."""
    traces = [go.Scatter(
        x=[r["hour"] for r in rows], y=[r["cache_hit_ratio"] for r in rows],
        customdata=[[r["requests"], r["prompt_tokens"]] for r in rows], mode="lines+markers",
        name="cache hit ratio",
        hovertemplate="%{x|%Y-%m-%d %H:00}: %{y:.1%} of %{customdata[1]:,} prompt tokens"
                      " (%{customdata[0]} requests)<extra></extra>",
    )] if rows else []
    return figure(traces, "hour (UTC)", "cache reads / prompt tokens", yaxis_tickformat=".0%",
                  yaxis_range=[0, 1.05])


def cache_misses(rows: list[dict]) -> go.Figure:
    """Requests per diagnosis, Anthropic's and the gateway's side by side."""
    traces = []
    for source, legend in SOURCES.items():
        mine = [r for r in rows if r["source"] == source]
        if mine:
            traces.append(go.Bar(name=legend, orientation="h", x=[r["requests"] for r in mine],
                                 y=[label(r["reason"]) for r in mine]))
    return figure(traces, "requests", "", barmode="group", yaxis_automargin=True)


def top_sessions(rows: list[dict]) -> go.Figure:
    """Horizontal bars, the costliest session on top."""
    traces = [go.Bar(
        orientation="h", x=[r["cost_usd"] for r in rows], y=[label(r["session_id"]) for r in rows],
        customdata=[[r["requests"], ratio(r["cache_hit_ratio"])] for r in rows], name="cost",
        hovertemplate="%{y}: $%{x:,.2f}, %{customdata[0]} requests, cache hit ratio "
                      "%{customdata[1]}<extra></extra>",
    )] if rows else []
    return figure(traces, "USD", "", xaxis_tickprefix="$", yaxis_autorange="reversed",
                  yaxis_automargin=True)


def subtree_costs(rows: list[dict]) -> dict[str, float]:
    """Each agent's cost with its subagents': the rows come parents first, so walking them
    backwards adds every agent to its parent after all of its own subagents."""
    totals = {r["agent"]: r["cost_usd"] for r in rows}
    for r in reversed(rows):
        if r["parent"] is not None:
            totals[r["parent"]] += totals[r["agent"]]
    return totals


def agent_tree(rows: list[dict]) -> go.Figure:
    """A treemap of the session's agents, so the costly branches stand out: each box is an
    agent with its subagents nested in it, labelled with their cost; the session is the root."""
    if not rows:
        return figure([], "", "")
    totals = subtree_costs(rows)
    name = {r["agent"]: "main agent" if r["depth"] == 0 else r["agent"] for r in rows}
    trace = go.Treemap(
        ids=["session"] + [f"agent:{r['agent']}" for r in rows],
        parents=[""] + ["session" if r["parent"] is None else f"agent:{r['parent']}"
                        for r in rows],
        labels=[label(f"session {rows[0]['session_id']}")]
        + [label(f"{name[r['agent']]}: ${totals[r['agent']]:,.2f}") for r in rows],
        values=[0] + [r["cost_usd"] for r in rows],
        branchvalues="remainder",
        customdata=[[sum(r["requests"] for r in rows), 0.0]]
        + [[r["requests"], r["cost_usd"]] for r in rows],
        hovertemplate="%{label}: %{customdata[0]} requests, own cost $%{customdata[1]:,.4f}"
                      "<extra></extra>",
    )
    return figure([trace], "", "")


def table(headers: Iterable[str], rows: list[list[object]]) -> str:
    """An HTML table, every cell escaped here; the first column holds ids (monospace)."""
    if not rows:
        return "<p>(no rows)</p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def sessions_table(rows: list[dict]) -> str:
    """The bars' numbers, with the full session ids to search the log for."""
    headers = ["session", "requests", "agents", "cost", "cache hit ratio", "first seen",
               "last seen"]
    return table(headers, [[r["session_id"], r["requests"], r["agents"], usd(r["cost_usd"]),
                            ratio(r["cache_hit_ratio"]), r["first_seen"], r["last_seen"]]
                           for r in rows])


def indented(row: dict) -> str:
    """An agent's name in the tree table: two spaces and a branch per level below the main one."""
    if row["depth"] == 0:
        return "main agent"
    return "  " * (row["depth"] - 1) + "└ " + row["agent"]


def agents_table(rows: list[dict]) -> str:
    """The treemap's numbers per agent (its own requests only), with the token buckets."""
    headers = ["agent", "requests", "cost", *BUCKETS.values()]
    return table(headers, [[indented(r), r["requests"], usd(r["cost_usd"]),
                            *(f"{r[col]:,}" for col in BUCKETS)] for r in rows])


def chart(fig: go.Figure, n: int) -> str:
    """A chart's div and the script that draws it with the page's one copy of plotly.js."""
    return plotly.io.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"chart-{n}",
                             config={"displaylogo": False, "responsive": True})


def header(o: dict) -> str:
    """What the charts cover: the log's time range, its records and the chat requests' cost."""
    if not o["records"]:
        return '<p class="meta">No audit records in this log.</p>'
    return (f'<p class="meta">{esc(o["first_record"])} to {esc(o["last_record"])} UTC: '
            f'{esc(format(o["records"], ","))} records, {esc(format(o["chat_requests"], ","))} '
            f'chat requests costing {esc(usd(o["cost_usd"]))}.</p>')


def page(rows: Rows) -> str:
    """The whole page: a header, then one section per chart, with a table where a list is
    easier to read than a picture."""
    sessions, agents = rows("sessions"), rows("agents")
    tree_title = f"Agents of session {agents[0]['session_id']}" if agents else "Agents"
    sections = [
        ("Spend per cost center and day", spend(rows("spend")), ""),
        ("Tokens by bucket and model", tokens(rows("tokens")), ""),
        ("Cache hit ratio per hour", cache_hits(rows("cache_hits")), ""),
        ("Cache misses by reason", cache_misses(rows("cache_misses")), ""),
        ("Top sessions by cost", top_sessions(sessions), sessions_table(sessions)),
        (tree_title, agent_tree(agents), agents_table(agents)),
    ]
    body = "".join(f"<section><h2>{esc(title)}</h2>{chart(fig, n)}{extra}</section>"
                   for n, (title, fig, extra) in enumerate(sections))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Claude gateway usage report</title>"
        f"<style>{CSS}</style><script>{plotly.offline.get_plotlyjs()}</script></head>"
        f'<body data-charts="{len(sections)}"><h1>Claude gateway usage report</h1>'
        f'{header(rows("overview")[0])}{body}</body></html>\n'
    )
