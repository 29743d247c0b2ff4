-- The prompt cache over time and why it missed, for the HTML report's charts (chat requests
-- only). Two statements: report.py runs the first as chart `cache_hits`, the second as chart
-- `cache_misses`. `date_trunc` is DuckDB's and Postgres's (BigQuery: TIMESTAMP_TRUNC).
--
-- Cache hit ratio per hour: the share of prompt tokens read from the cache (as in usage.sql).
SELECT
    date_trunc('hour', "timestamp")                                        AS hour,
    count(*)                                                               AS requests,
    sum("gen_ai.usage.cache_read.input_tokens")                            AS cache_read_tokens,
    sum("gen_ai.usage.input_tokens" + "gen_ai.usage.cache_creation.input_tokens"
        + "gen_ai.usage.cache_read.input_tokens")                          AS prompt_tokens,
    round(sum("gen_ai.usage.cache_read.input_tokens") / nullif(sum(
        "gen_ai.usage.input_tokens" + "gen_ai.usage.cache_creation.input_tokens"
        + "gen_ai.usage.cache_read.input_tokens"), 0), 4)                  AS cache_hit_ratio
FROM audit
WHERE "gen_ai.operation.name" = 'chat'
GROUP BY ALL
ORDER BY hour;

-- Requests per cache diagnosis, two sources side by side: `anthropic` counts the API's
-- `cache_miss_reason` (model_changed, system_changed, tools_changed, messages_changed,
-- previous_message_not_found, unavailable, pending), `gateway` the gateway's own
-- `cache_verdict` (hit, ttl_expired, system_changed, ...). Records without one (older
-- gateways, requests with nothing to diagnose) add no rows.
SELECT 'anthropic' AS source, cache_miss_reason AS reason, count(*) AS requests
FROM audit
WHERE "gen_ai.operation.name" = 'chat' AND cache_miss_reason IS NOT NULL
GROUP BY ALL
UNION ALL
SELECT 'gateway' AS source, cache_verdict AS reason, count(*) AS requests
FROM audit
WHERE "gen_ai.operation.name" = 'chat' AND cache_verdict IS NOT NULL
GROUP BY ALL
ORDER BY source, requests DESC, reason;
