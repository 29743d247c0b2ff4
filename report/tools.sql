-- Tool calls and tool results per consumer and day, from the audit records' `tool_calls` and
-- `tool_results` arrays (README.md, "Audit record"). Two statements: report.py runs the first
-- as report `tools`, the second as report `tool_results`. Records without the arrays (older
-- gateways) or with empty ones add no rows. `unnest` is DuckDB's; other warehouses spell the
-- array expansion their own way (BigQuery UNNEST, Snowflake LATERAL FLATTEN).
--
-- consumer is the record's `virtual_key` (the consumer's id), '(none)' without one.
--
-- Tool calls: per tool, one row with risk '(any)' counting all its calls, plus one row per risk
-- tag counting the calls that tag marked. A call can carry several tags and most carry none,
-- so the tag rows do not add up to the '(any)' row; the untagged calls are not derivable
-- from the record and are not reported.
WITH calls AS (
    SELECT
        CAST("timestamp" AS DATE)         AS day,
        coalesce(cost_center, '(none)')   AS cost_center,
        coalesce(virtual_key, '(none)')   AS consumer,
        unnest(tool_calls)                AS c
    FROM audit
)
SELECT day, cost_center, consumer, c.tool AS tool, '(any)' AS risk, sum(c.count) AS calls
FROM calls
GROUP BY ALL
UNION ALL
SELECT day, cost_center, consumer, c.tool AS tool, r.tag AS risk, sum(r.count) AS calls
FROM calls, unnest(c.risks) AS t(r)
GROUP BY ALL
-- '(any)' sorts before every tag (tags are [a-z0-9-]).
ORDER BY day, cost_center, consumer, tool, risk;

-- Tool results fed back to the model (the last user message of each request), per tool: how
-- many results and their bytes, to see which tools feed the most tokens. A conversation resends
-- earlier results on every turn; each record counts only its own turn's results.
SELECT
    CAST("timestamp" AS DATE)             AS day,
    coalesce(cost_center, '(none)')       AS cost_center,
    coalesce(virtual_key, '(none)')       AS consumer,
    f.tool                                AS tool,
    sum(f.count)                          AS results,
    sum(f.bytes)                          AS bytes
FROM audit, unnest(tool_results) AS t(f)
GROUP BY ALL
ORDER BY day, cost_center, consumer, bytes DESC, tool;
