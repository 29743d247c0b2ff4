//! The wording of the refusals for limits and budgets, in one place: the filter answers them
//! itself (`access`) and the global rate-limit service (`ratelimit/`) answers the same refusal
//! across replicas with the same message and reason. Pure functions, no state.

use super::limits::Period;

/// Whose budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    CostCenter,
    Consumer,
}

impl Holder {
    fn as_str(self) -> &'static str {
        match self {
            Holder::CostCenter => "cost center",
            Holder::Consumer => "consumer",
        }
    }
}

/// A limit or budget that refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    RequestsPerMinute {
        consumer: &'a str,
        limit: u64,
    },
    InputTokensPerMinute {
        consumer: &'a str,
        limit: u64,
    },
    OutputTokensPerMinute {
        consumer: &'a str,
        limit: u64,
    },
    /// A spend budget of `limit_micro_usd` for the period ending at `renews_at_ms`.
    Budget {
        holder: Holder,
        id: &'a str,
        period: Period,
        limit_micro_usd: u64,
        renews_at_ms: u64,
    },
}

impl Refusal<'_> {
    /// The message of the API's `rate_limit_error` envelope.
    pub fn message(&self) -> String {
        match *self {
            Refusal::RequestsPerMinute { consumer, limit } => {
                format!("Consumer `{consumer}` is limited to {limit} requests per minute.")
            }
            Refusal::InputTokensPerMinute { consumer, limit } => {
                format!("Consumer `{consumer}` is limited to {limit} input tokens per minute.")
            }
            Refusal::OutputTokensPerMinute { consumer, limit } => {
                format!("Consumer `{consumer}` is limited to {limit} output tokens per minute.")
            }
            Refusal::Budget {
                holder,
                id,
                period,
                limit_micro_usd,
                renews_at_ms,
            } => format!(
                "The {} budget of {} `{id}` (${:.2}) is spent; it renews at {}.",
                period.as_str(),
                holder.as_str(),
                limit_micro_usd as f64 / 1e6,
                crate::time::rfc3339(renews_at_ms.saturating_mul(1_000_000))
            ),
        }
    }

    /// Envoy's response code details for the filter's own answer (`claude_gateway.<reason>`).
    pub fn details(&self) -> &'static str {
        match self {
            Refusal::RequestsPerMinute { .. } => "claude_gateway.requests_per_minute",
            Refusal::InputTokensPerMinute { .. } => "claude_gateway.input_tokens_per_minute",
            Refusal::OutputTokensPerMinute { .. } => "claude_gateway.output_tokens_per_minute",
            Refusal::Budget {
                holder: Holder::CostCenter,
                period: Period::Day,
                ..
            } => "claude_gateway.budget_daily",
            Refusal::Budget {
                holder: Holder::CostCenter,
                period: Period::Month,
                ..
            } => "claude_gateway.budget_monthly",
            Refusal::Budget {
                holder: Holder::Consumer,
                period: Period::Day,
                ..
            } => "claude_gateway.consumer_budget_daily",
            Refusal::Budget {
                holder: Holder::Consumer,
                period: Period::Month,
                ..
            } => "claude_gateway.consumer_budget_monthly",
        }
    }

    /// The reason label of `claude_gateway_refused{reason}` (the details without the prefix).
    pub fn reason(&self) -> &'static str {
        let details = self.details();
        details.strip_prefix("claude_gateway.").unwrap_or(details)
    }
}

/// Whole seconds to wait for `ms` milliseconds, at least 1 (`retry-after`).
pub fn retry_after_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wording() {
        let rpm = Refusal::RequestsPerMinute {
            consumer: "alice",
            limit: 120,
        };
        assert_eq!(
            rpm.message(),
            "Consumer `alice` is limited to 120 requests per minute."
        );
        assert_eq!(rpm.reason(), "requests_per_minute");
        let otpm = Refusal::OutputTokensPerMinute {
            consumer: "alice",
            limit: 5,
        };
        assert_eq!(
            otpm.message(),
            "Consumer `alice` is limited to 5 output tokens per minute."
        );
        assert_eq!(otpm.details(), "claude_gateway.output_tokens_per_minute");
        let day = Refusal::Budget {
            holder: Holder::CostCenter,
            id: "ci",
            period: Period::Day,
            limit_micro_usd: 20_000_000,
            renews_at_ms: 1_795_305_600_000,
        };
        assert_eq!(
            day.message(),
            "The daily budget of cost center `ci` ($20.00) is spent; it renews at \
             2026-11-22T00:00:00.000Z."
        );
        assert_eq!(day.reason(), "budget_daily");
        let month = Refusal::Budget {
            holder: Holder::Consumer,
            id: "bob",
            period: Period::Month,
            limit_micro_usd: 1_500_000,
            renews_at_ms: 1_795_305_600_000,
        };
        assert!(
            month
                .message()
                .starts_with("The monthly budget of consumer `bob` ($1.50)")
        );
        assert_eq!(month.reason(), "consumer_budget_monthly");
        assert_eq!(retry_after_seconds(0), 1);
        assert_eq!(retry_after_seconds(1001), 2);
    }
}
