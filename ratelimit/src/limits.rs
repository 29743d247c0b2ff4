//! Which limits exist: read once from the gateway's plugin configuration into a table keyed by
//! (subject, kind), and turned into limitador limits (one namespace per subject and kind, so
//! a descriptor's counter is found without evaluating any condition).

use claude_gateway::config::Config;
use claude_gateway::keys::limits::Period;
use claude_gateway::keys::refusals::{Holder, Refusal};
use limitador::limit::Limit;
use std::collections::HashMap;

/// Length of the per-minute windows, in seconds.
pub const MINUTE_SECONDS: u64 = 60;
/// A day budget's counter lives this long (from its first hit), longer than the UTC day it
/// counts; the next day's descriptors name another window, so another counter.
pub const DAY_COUNTER_SECONDS: u64 = 2 * 86_400;
/// Likewise for a calendar month (at most 31 days).
pub const MONTH_COUNTER_SECONDS: u64 = 32 * 86_400;
/// The limitador variable a budget's counter is keyed on: the descriptor's `window` entry.
pub const WINDOW_VARIABLE: &str = "window";
/// The limitador variable a group's counters are keyed on: the descriptor's `member` entry.
pub const MEMBER_VARIABLE: &str = "member";

/// What a descriptor counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Requests,
    InputTokens,
    OutputTokens,
    UsdDay,
    UsdMonth,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Requests,
        Kind::InputTokens,
        Kind::OutputTokens,
        Kind::UsdDay,
        Kind::UsdMonth,
    ];

    /// The descriptor's `kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::InputTokens => "input_tokens",
            Kind::OutputTokens => "output_tokens",
            Kind::UsdDay => "usd_day",
            Kind::UsdMonth => "usd_month",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The budget period of a spend kind.
    pub fn period(self) -> Option<Period> {
        match self {
            Kind::UsdDay => Some(Period::Day),
            Kind::UsdMonth => Some(Period::Month),
            _ => None,
        }
    }

    /// Whether a hit counts a request (refused, and then not counted, when it would exceed the
    /// limit) rather than charging what was used (always added).
    pub fn counts_requests(self) -> bool {
        self == Kind::Requests
    }

    /// How long limitador keeps a counter of this kind, from its first hit.
    pub fn counter_seconds(self, minute_seconds: u64) -> u64 {
        match self {
            Kind::Requests | Kind::InputTokens | Kind::OutputTokens => minute_seconds,
            Kind::UsdDay => DAY_COUNTER_SECONDS,
            Kind::UsdMonth => MONTH_COUNTER_SECONDS,
        }
    }
}

/// Whom a descriptor's limit belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Consumer(String),
    CostCenter(String),
    /// A group rule of identity `jwt`: its limits and budget hold for each member.
    Group(String),
}

impl Subject {
    /// The descriptor key naming it.
    pub fn key(&self) -> &'static str {
        match self {
            Subject::Consumer(_) => "consumer",
            Subject::CostCenter(_) => "cost_center",
            Subject::Group(_) => "group",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Subject::Consumer(id) | Subject::CostCenter(id) | Subject::Group(id) => id,
        }
    }

    /// The refusal (wording shared with the filter) when this subject's `kind` limit of
    /// `limit` is reached; `renews_at_ms` is the end of a budget's window; a group's refusal
    /// names its `member`, as the filter names the consumer.
    pub fn refusal<'a>(
        &'a self,
        member: Option<&'a str>,
        kind: Kind,
        limit: u64,
        renews_at_ms: u64,
    ) -> Refusal<'a> {
        let id = member.unwrap_or(self.id());
        let budget = |holder, period| Refusal::Budget {
            holder,
            id,
            period,
            limit_micro_usd: limit,
            renews_at_ms,
        };
        match (self, kind.period()) {
            (Subject::CostCenter(_), Some(period)) => budget(Holder::CostCenter, period),
            (Subject::Consumer(_) | Subject::Group(_), Some(period)) => {
                budget(Holder::Consumer, period)
            }
            // Only consumers (and groups' members) have per-minute limits (`limit_of`).
            (_, None) => match kind {
                Kind::InputTokens => Refusal::InputTokensPerMinute {
                    consumer: id,
                    limit,
                },
                Kind::OutputTokens => Refusal::OutputTokensPerMinute {
                    consumer: id,
                    limit,
                },
                _ => Refusal::RequestsPerMinute {
                    consumer: id,
                    limit,
                },
            },
        }
    }
}

/// The one place that says which limit the configuration sets for `subject` and `kind`
/// (`None`: no limit, so never over and nothing counted). Per-consumer limits of 0 mean none,
/// as in the filter; a budget of 0 USD is a limit (always spent).
pub fn limit_of(config: &Config, subject: &Subject, kind: Kind) -> Option<u64> {
    let positive = |n: u64| (n > 0).then_some(n);
    // A configured consumer's policy, or a group rule's (for each of its members).
    let policy = |subject: &Subject| match subject {
        Subject::Consumer(id) => config.consumers.iter().find(|c| &c.id == id),
        Subject::Group(g) => config
            .jwt
            .as_ref()
            .and_then(|j| j.rules.iter().find(|r| &r.group == g))
            .map(|r| &r.policy),
        Subject::CostCenter(_) => None,
    };
    match (subject, kind.period()) {
        (Subject::Consumer(_) | Subject::Group(_), None) => {
            let limits = policy(subject)?.limits;
            positive(match kind {
                Kind::Requests => limits.requests_per_minute,
                Kind::InputTokens => limits.input_tokens_per_minute,
                _ => limits.output_tokens_per_minute,
            })
        }
        (Subject::Consumer(_) | Subject::Group(_), Some(period)) => {
            let b = policy(subject)?.budget;
            match period {
                Period::Day => b.daily,
                Period::Month => b.monthly,
            }
        }
        (Subject::CostCenter(cc), Some(period)) => {
            let budget = config.budgets.iter().find(|b| &b.cost_center == cc)?;
            match period {
                Period::Day => budget.daily,
                Period::Month => budget.monthly,
            }
        }
        (Subject::CostCenter(_), None) => None,
    }
}

/// The configured limits, by subject and kind.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    table: HashMap<(Subject, Kind), u64>,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        let subjects = config
            .consumers
            .iter()
            .map(|c| Subject::Consumer(c.id.clone()))
            .chain(
                config
                    .budgets
                    .iter()
                    .map(|b| Subject::CostCenter(b.cost_center.clone())),
            )
            .chain(
                config
                    .jwt
                    .iter()
                    .flat_map(|j| &j.rules)
                    .map(|r| Subject::Group(r.group.clone())),
            );
        let mut table = HashMap::new();
        for subject in subjects {
            for kind in Kind::ALL {
                if let Some(limit) = limit_of(config, &subject, kind) {
                    table.insert((subject.clone(), kind), limit);
                }
            }
        }
        Limits { table }
    }

    pub fn get(&self, subject: &Subject, kind: Kind) -> Option<u64> {
        self.table.get(&(subject.clone(), kind)).copied()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// How many limits of each kind, for the start-up log line (counts only).
    pub fn summary(&self) -> String {
        let count = |kind: Kind, key: &str| {
            self.table
                .keys()
                .filter(|(s, k)| *k == kind && s.key() == key)
                .count()
        };
        let mut parts = Vec::new();
        for kind in [Kind::Requests, Kind::InputTokens, Kind::OutputTokens] {
            parts.push(format!(
                "{}_per_minute={}",
                kind.as_str(),
                count(kind, "consumer")
            ));
        }
        for kind in [Kind::UsdDay, Kind::UsdMonth] {
            parts.push(format!(
                "{}: cost_center={} consumer={}",
                kind.as_str(),
                count(kind, "cost_center"),
                count(kind, "consumer")
            ));
        }
        parts.join(", ")
    }

    /// limitador's limits: one per entry, in a namespace of its own, without conditions; a
    /// budget's counter is keyed on the window.
    pub fn limitador_limits(&self, domain: &str, minute_seconds: u64) -> Vec<Limit> {
        let mut entries: Vec<_> = self.table.iter().collect();
        entries.sort();
        entries
            .into_iter()
            .map(|((subject, kind), max)| {
                let mut variables = match kind.period() {
                    Some(_) => vec![WINDOW_VARIABLE],
                    None => Vec::new(),
                };
                if matches!(subject, Subject::Group(_)) {
                    variables.push(MEMBER_VARIABLE);
                }
                Limit::new(
                    namespace(domain, subject, *kind),
                    i64::try_from(*max).unwrap_or(i64::MAX),
                    kind.counter_seconds(minute_seconds),
                    Vec::<&str>::new(),
                    variables,
                )
            })
            .collect()
    }
}

/// The limitador namespace of a subject's kind (part of its Redis keys, inside the hash tag:
/// `namespace:{claude-gateway/consumer=alice/requests},counter:…`). Ids are labels
/// (letters, digits, `-`, `_`), so no separator occurs in them.
pub fn namespace(domain: &str, subject: &Subject, kind: Kind) -> String {
    format!(
        "{domain}/{}={}/{}",
        subject.key(),
        subject.id(),
        kind.as_str()
    )
}
