-- Spend and tokens for the HTML report's charts (chat requests only, as in usage.sql). Two
-- statements: report.py runs the first as chart `spend`, the second as chart `tokens`.
--
-- Spend per cost center and day, in USD (the records hold micro-USD).
SELECT
    CAST("timestamp" AS DATE)                                              AS day,
    coalesce(cost_center, '(none)')                                        AS cost_center,
    count(*)                                                               AS requests,
    sum(cost_micro_usd) / 1e6                                              AS cost_usd
FROM audit
WHERE "gen_ai.operation.name" = 'chat'
GROUP BY ALL
ORDER BY day, cost_center;

-- Tokens per bucket and model: uncached input, cache writes by TTL, cache reads, output.
SELECT
    coalesce(price, "gen_ai.response.model", "gen_ai.request.model", '?')  AS model,
    sum("gen_ai.usage.input_tokens")                                       AS input_tokens,
    sum(cache_creation_5m_input_tokens)                                    AS cache_write_5m_tokens,
    sum(cache_creation_1h_input_tokens)                                    AS cache_write_1h_tokens,
    sum("gen_ai.usage.cache_read.input_tokens")                            AS cache_read_tokens,
    sum("gen_ai.usage.output_tokens")                                      AS output_tokens
FROM audit
WHERE "gen_ai.operation.name" = 'chat'
GROUP BY ALL
ORDER BY model;
