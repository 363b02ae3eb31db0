//! `GET /metrics`: a [`ServerSnapshot`] in the Prometheus text exposition
//! format (version 0.0.4), written by hand. Every family has `# HELP` and
//! `# TYPE` lines even when it has no sample yet; labels are `storage`,
//! `backend` and, for the state gauges, `status`/`state` (one series per
//! value, 1 for the current one and 0 for the others).

use std::fmt::Write;

use super::model::{parse_tid, BackendSnapshot, BackendState, RaidStatus, ServerSnapshot};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the whole snapshot.
pub fn render(snapshot: &ServerSnapshot) -> String {
    let mut out = Metrics::default();

    out.family(
        "zeoraid_info",
        "gauge",
        "The zeoraid version serving (always 1).",
    );
    out.sample("zeoraid_info", &[("version", &snapshot.version)], 1.0);

    out.family(
        "zeoraid_storage_status",
        "gauge",
        "Status of each storage: 1 for the current status, 0 for the others.",
    );
    for s in &snapshot.storages {
        for status in RaidStatus::ALL {
            let value = if s.status == status { 1.0 } else { 0.0 };
            out.sample(
                "zeoraid_storage_status",
                &[
                    ("storage", &s.name),
                    ("kind", s.kind.as_str()),
                    ("status", status.as_str()),
                ],
                value,
            );
        }
    }

    out.family(
        "zeoraid_backend_state",
        "gauge",
        "State of each backend: 1 for the current state, 0 for the others.",
    );
    for (storage, b) in backends(snapshot) {
        for word in BackendState::WORDS {
            let value = if b.state.word() == word { 1.0 } else { 0.0 };
            out.sample(
                "zeoraid_backend_state",
                &[("storage", storage), ("backend", &b.name), ("state", word)],
                value,
            );
        }
    }

    out.family(
        "zeoraid_backend_last_transaction_timestamp_seconds",
        "gauge",
        "Time (Unix seconds) of the last transaction id each backend is known to hold.",
    );
    for (storage, b) in backends(snapshot) {
        let Some(tid) = b.last_tid.as_deref().and_then(parse_tid) else {
            continue;
        };
        if tid.is_zero() {
            continue;
        }
        out.sample(
            "zeoraid_backend_last_transaction_timestamp_seconds",
            &[("storage", storage), ("backend", &b.name)],
            tid.unix_time(),
        );
    }

    // A backend without counters (a plain storage), or without the counted
    // thing (an object cache), has no sample.
    type Pick = fn(&super::model::BackendCounters) -> Option<f64>;
    let counters: [(&str, &str, &str, Pick); 9] = [
        (
            "zeoraid_backend_commits_total",
            "counter",
            "Transactions each backend committed.",
            |c| Some(c.commits as f64),
        ),
        (
            "zeoraid_backend_loads_total",
            "counter",
            "Reads each backend answered.",
            |c| Some(c.loads as f64),
        ),
        (
            "zeoraid_backend_errors_total",
            "counter",
            "Calls to each backend that failed or timed out.",
            |c| Some(c.errors as f64),
        ),
        (
            "zeoraid_backend_read_seconds_total",
            "counter",
            "Time spent in reads of each backend that wait for it (inline loads are counted, not timed).",
            |c| Some(c.read_seconds),
        ),
        (
            "zeoraid_backend_write_seconds_total",
            "counter",
            "Time spent in writes to each backend (new oids, vote, finish, abort, pack).",
            |c| Some(c.write_seconds),
        ),
        (
            "zeoraid_backend_calls_in_flight",
            "gauge",
            "Calls to each backend in progress.",
            |c| Some(c.in_flight as f64),
        ),
        (
            "zeoraid_backend_cache_hits_total",
            "counter",
            "Loads answered by each backend's object cache (backends with one: `<zeoclient>` with `cache-size`).",
            |c| c.cache.map(|k| k.hits as f64),
        ),
        (
            "zeoraid_backend_cache_misses_total",
            "counter",
            "Loads each backend's object cache did not hold (sent to the backend's server).",
            |c| c.cache.map(|k| k.misses as f64),
        ),
        (
            "zeoraid_backend_cache_bytes",
            "gauge",
            "Bytes held by each backend's object cache.",
            |c| c.cache.map(|k| k.bytes as f64),
        ),
    ];
    for (name, kind, help, pick) in counters {
        out.family(name, kind, help);
        for (storage, b) in backends(snapshot) {
            if let Some(value) = b.counters.as_ref().and_then(pick) {
                out.sample(name, &[("storage", storage), ("backend", &b.name)], value);
            }
        }
    }

    type PickProgress = fn(&super::model::RecoveryProgress) -> Option<f64>;
    let progress: [(&str, &str, PickProgress); 6] = [
        (
            "zeoraid_backend_recovery_transactions_copied",
            "Transactions copied so far by a recovery in progress.",
            |p| Some(p.transactions as f64),
        ),
        (
            "zeoraid_backend_recovery_transactions_expected",
            "Transactions a recovery in progress has to copy in all, when known.",
            |p| p.transactions_total.map(|n| n as f64),
        ),
        (
            "zeoraid_backend_recovery_bytes_copied",
            "Bytes copied so far by a recovery in progress.",
            |p| Some(p.bytes as f64),
        ),
        (
            "zeoraid_backend_recovery_bytes_expected",
            "Bytes a recovery in progress has to copy in all, when known.",
            |p| p.bytes_total.map(|n| n as f64),
        ),
        (
            "zeoraid_backend_recovery_ratio",
            "Fraction (0 to 1) of a recovery in progress done, when known.",
            |p| p.fraction(),
        ),
        (
            "zeoraid_backend_recovery_eta_seconds",
            "Estimated seconds until a recovery in progress catches up, when known.",
            |p| p.eta_seconds.map(|n| n as f64),
        ),
    ];
    for (name, help, pick) in progress {
        out.family(name, "gauge", help);
        for (storage, b) in backends(snapshot) {
            if let BackendState::Recovering { progress } = &b.state {
                if let Some(value) = pick(progress) {
                    out.sample(name, &[("storage", storage), ("backend", &b.name)], value);
                }
            }
        }
    }

    out.text
}

/// Every backend with its storage name.
fn backends(snapshot: &ServerSnapshot) -> impl Iterator<Item = (&str, &BackendSnapshot)> {
    snapshot
        .storages
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s.name.as_str(), b)))
}

#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus reads it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::admin::model::{
        BackendCounters, CacheCounters, RecoveryProgress, StorageKind, StorageSnapshot,
    };

    fn snapshot() -> ServerSnapshot {
        ServerSnapshot {
            version: "0.1.0".into(),
            storages: vec![StorageSnapshot {
                name: "main".into(),
                kind: StorageKind::Raid,
                status: RaidStatus::Recovering,
                backends: vec![
                    BackendSnapshot {
                        name: "a".into(),
                        state: BackendState::Optimal,
                        last_tid: Some("03d2a1b2c3d4e5f6".into()),
                        counters: Some(BackendCounters {
                            commits: 7,
                            loads: 40,
                            errors: 1,
                            in_flight: 2,
                            read_seconds: 0.5,
                            write_seconds: 1.25,
                            cache: Some(CacheCounters {
                                hits: 30,
                                misses: 10,
                                bytes: 4096,
                                capacity: 20_000_000,
                            }),
                        }),
                    },
                    BackendSnapshot {
                        name: "we\"ird\\".into(),
                        state: BackendState::Recovering {
                            progress: RecoveryProgress {
                                transactions: 10,
                                transactions_total: Some(40),
                                bytes: 2048,
                                bytes_total: None,
                                eta_seconds: Some(30),
                            },
                        },
                        last_tid: None,
                        counters: None,
                    },
                ],
            }],
        }
    }

    #[test]
    fn state_gauges_have_one_series_per_state() {
        let text = render(&snapshot());
        for line in [
            r#"zeoraid_backend_state{storage="main",backend="a",state="optimal"} 1"#,
            r#"zeoraid_backend_state{storage="main",backend="a",state="degraded"} 0"#,
            r#"zeoraid_backend_state{storage="main",backend="a",state="recovering"} 0"#,
            r#"zeoraid_backend_state{storage="main",backend="we\"ird\\",state="recovering"} 1"#,
            r#"zeoraid_storage_status{storage="main",kind="raid",status="recovering"} 1"#,
            r#"zeoraid_storage_status{storage="main",kind="raid",status="optimal"} 0"#,
            r#"zeoraid_backend_commits_total{storage="main",backend="a"} 7"#,
            r#"zeoraid_backend_loads_total{storage="main",backend="a"} 40"#,
            r#"zeoraid_backend_errors_total{storage="main",backend="a"} 1"#,
            r#"zeoraid_backend_read_seconds_total{storage="main",backend="a"} 0.5"#,
            r#"zeoraid_backend_write_seconds_total{storage="main",backend="a"} 1.25"#,
            r#"zeoraid_backend_calls_in_flight{storage="main",backend="a"} 2"#,
            r#"zeoraid_backend_cache_hits_total{storage="main",backend="a"} 30"#,
            r#"zeoraid_backend_cache_misses_total{storage="main",backend="a"} 10"#,
            r#"zeoraid_backend_cache_bytes{storage="main",backend="a"} 4096"#,
            "# TYPE zeoraid_backend_cache_hits_total counter",
            r#"zeoraid_backend_recovery_transactions_copied{storage="main",backend="we\"ird\\"} 10"#,
            r#"zeoraid_backend_recovery_transactions_expected{storage="main",backend="we\"ird\\"} 40"#,
            r#"zeoraid_backend_recovery_ratio{storage="main",backend="we\"ird\\"} 0.25"#,
            r#"zeoraid_backend_recovery_eta_seconds{storage="main",backend="we\"ird\\"} 30"#,
            "# TYPE zeoraid_backend_commits_total counter",
            "# TYPE zeoraid_backend_state gauge",
            r#"zeoraid_info{version="0.1.0"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Unknown totals and uncounted backends have no sample.
        assert!(!text.contains("bytes_expected{"));
        assert!(!text.contains(r#"commits_total{storage="main",backend="we"#));
        assert!(!text.contains(r#"cache_hits_total{storage="main",backend="we"#));
    }

    #[test]
    fn last_transaction_is_a_unix_time() {
        let text = render(&snapshot());
        let line = text
            .lines()
            .find(|l| l.starts_with("zeoraid_backend_last_transaction_timestamp_seconds{"))
            .unwrap();
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let expected = parse_tid("03d2a1b2c3d4e5f6").unwrap().unix_time();
        assert!((value - expected).abs() < 1e-3, "{line}");
    }

    #[test]
    fn every_line_is_well_formed() {
        let text = render(&snapshot());
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP zeoraid_") || line.starts_with("# TYPE zeoraid_"));
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(series.starts_with("zeoraid_"), "{line}");
            value.parse::<f64>().unwrap();
        }
    }
}
