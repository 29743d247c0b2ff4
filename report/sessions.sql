-- Sessions and their subagents (chat requests only). Two statements: report.py runs the first
-- as report `sessions`, the second as report `agents`. Records without a `session.id` belong
-- to no session and add no rows.
--
-- The 20 costliest sessions: requests, agents (the main one counts), cost in USD and the
-- share of prompt tokens read from the cache (as in usage.sql).
SELECT
    "session.id"                                                           AS session_id,
    count(*)                                                               AS requests,
    count(DISTINCT coalesce(agent_id, '(main)'))                           AS agents,
    sum(cost_micro_usd) / 1e6                                              AS cost_usd,
    round(sum("gen_ai.usage.cache_read.input_tokens") / nullif(sum(
        "gen_ai.usage.input_tokens" + "gen_ai.usage.cache_creation.input_tokens"
        + "gen_ai.usage.cache_read.input_tokens"), 0), 4)                  AS cache_hit_ratio,
    min("timestamp")                                                       AS first_seen,
    max("timestamp")                                                       AS last_seen
FROM audit
WHERE "gen_ai.operation.name" = 'chat' AND "session.id" IS NOT NULL
GROUP BY ALL
ORDER BY cost_usd DESC, session_id
LIMIT 20;

-- The agent tree of one session: the session named by the parameter $session, or the
-- costliest one when it is null. One row per agent, parents before their children (depth
-- first): '(main)' is the session's main agent (records with a null `agent_id`), the others
-- hang under their `parent_agent_id` ('(main)' when it is null). An agent seen only as a
-- parent gets a row with no requests of its own. Each row's figures are the agent's own
-- requests, not its subtree's. Every agent has one parent, so the walk from '(main)' ends;
-- agents whose parents form a cycle (never written by a gateway) are not reached. `WITH
-- RECURSIVE` is standard SQL; the path (a list, to order the rows) is DuckDB's.
WITH RECURSIVE picked AS (
    SELECT coalesce(CAST($session AS VARCHAR), (
        SELECT "session.id" FROM audit
        WHERE "gen_ai.operation.name" = 'chat' AND "session.id" IS NOT NULL
        GROUP BY ALL
        ORDER BY sum(cost_micro_usd) DESC, "session.id"
        LIMIT 1))                                                          AS session_id
),
own AS (
    SELECT
        agent_id,
        min(parent_agent_id)                                               AS parent_agent_id,
        count(*)                                                           AS requests,
        sum(cost_micro_usd)                                                AS cost_micro_usd,
        sum("gen_ai.usage.input_tokens")                                   AS input_tokens,
        sum(cache_creation_5m_input_tokens)                                AS cache_write_5m_tokens,
        sum(cache_creation_1h_input_tokens)                                AS cache_write_1h_tokens,
        sum("gen_ai.usage.cache_read.input_tokens")                        AS cache_read_tokens,
        sum("gen_ai.usage.output_tokens")                                  AS output_tokens
    FROM audit, picked
    WHERE "gen_ai.operation.name" = 'chat' AND "session.id" = picked.session_id
    GROUP BY agent_id
),
nodes AS (
    SELECT agent_id, parent_agent_id FROM own WHERE agent_id IS NOT NULL
    UNION
    SELECT parent_agent_id, NULL FROM own
    WHERE parent_agent_id IS NOT NULL
      AND parent_agent_id NOT IN (SELECT agent_id FROM own WHERE agent_id IS NOT NULL)
),
tree AS (
    SELECT CAST(NULL AS VARCHAR) AS agent_id, CAST(NULL AS VARCHAR) AS parent_agent_id,
           0 AS depth, [''] AS path
    UNION ALL
    SELECT n.agent_id, n.parent_agent_id, t.depth + 1, list_append(t.path, n.agent_id)
    FROM nodes n JOIN tree t ON n.parent_agent_id IS NOT DISTINCT FROM t.agent_id
)
SELECT
    picked.session_id                                                      AS session_id,
    coalesce(tree.agent_id, '(main)')                                      AS agent,
    CASE WHEN tree.depth > 0 THEN coalesce(tree.parent_agent_id, '(main)') END AS parent,
    tree.depth                                                             AS depth,
    coalesce(own.requests, 0)                                              AS requests,
    coalesce(own.cost_micro_usd, 0) / 1e6                                  AS cost_usd,
    coalesce(own.input_tokens, 0)                                          AS input_tokens,
    coalesce(own.cache_write_5m_tokens, 0)                                 AS cache_write_5m_tokens,
    coalesce(own.cache_write_1h_tokens, 0)                                 AS cache_write_1h_tokens,
    coalesce(own.cache_read_tokens, 0)                                     AS cache_read_tokens,
    coalesce(own.output_tokens, 0)                                         AS output_tokens
FROM tree
CROSS JOIN picked
LEFT JOIN own ON own.agent_id IS NOT DISTINCT FROM tree.agent_id
-- No rows for a session without chat requests (or a log without sessions).
WHERE EXISTS (SELECT 1 FROM own)
ORDER BY tree.path;
