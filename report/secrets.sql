-- Secrets found in request bodies per rule and action, per consumer and day, from the audit
-- records' `secrets` arrays (README.md, "Audit record"; never a value, only rule, action,
-- count and locations). Every record counts, refused (blocked) and count_tokens requests too.
-- Records without the array (older gateways) or with an empty one add no rows. `unnest` is
-- DuckDB's; other warehouses spell the array expansion their own way.
--
-- consumer is the record's `virtual_key` (the consumer's id), '(none)' without one;
-- requests: records in which the rule found something; found: the secrets it found in them.
SELECT
    CAST("timestamp" AS DATE)             AS day,
    coalesce(cost_center, '(none)')       AS cost_center,
    coalesce(virtual_key, '(none)')       AS consumer,
    s.rule                                AS rule,
    s.action                              AS action,
    count(*)                              AS requests,
    sum(s.count)                          AS found
FROM audit, unnest(secrets) AS t(s)
GROUP BY ALL
ORDER BY day, cost_center, consumer, rule, action;
