-- The HTML report's header: the log's time range, how many audit records it holds (lines that
-- are not records have no timestamp and do not count; Envoy's own lines for requests the filter
-- has no record of do), and the chat requests and their cost that the charts add up.
SELECT
    min("timestamp")                                                        AS first_record,
    max("timestamp")                                                        AS last_record,
    count("timestamp")                                                      AS records,
    count(CASE WHEN "gen_ai.operation.name" = 'chat' THEN 1 END)            AS chat_requests,
    coalesce(sum(CASE WHEN "gen_ai.operation.name" = 'chat'
                      THEN cost_micro_usd END), 0) / 1e6                    AS cost_usd
FROM audit;
