-- Usage per cost center, model and day, from the gateway's audit records: one JSON object per
-- line, as Envoy writes them with envoy/envoy.yaml. Loaded into any warehouse as a table named
-- `audit` with these columns, the same query gives the same report.
SELECT
    coalesce(cost_center, '(none)')                                        AS cost_center,
    coalesce(price, "gen_ai.response.model", "gen_ai.request.model", '?')  AS model,
    CAST("timestamp" AS DATE)                                              AS day,
    count(*)                                                               AS requests,
    sum("gen_ai.usage.input_tokens")                                       AS input_tokens,
    sum(cache_creation_5m_input_tokens)                                    AS cache_write_5m_tokens,
    sum(cache_creation_1h_input_tokens)                                    AS cache_write_1h_tokens,
    sum("gen_ai.usage.cache_read.input_tokens")                            AS cache_read_tokens,
    sum("gen_ai.usage.output_tokens")                                      AS output_tokens,
    sum(cost_micro_usd)                                                    AS cost_micro_usd,
    -- Share of prompt tokens served from the cache.
    round(sum("gen_ai.usage.cache_read.input_tokens") / nullif(sum(
        "gen_ai.usage.input_tokens" + "gen_ai.usage.cache_creation.input_tokens"
        + "gen_ai.usage.cache_read.input_tokens"), 0), 4)                  AS cache_hit_ratio,
    -- Cache reads and writes priced as plain input, minus what they cost.
    sum(cache_savings_micro_usd)                                           AS cache_savings_micro_usd
FROM audit
WHERE "gen_ai.operation.name" = 'chat'
GROUP BY ALL
ORDER BY day, cost_center, model;
