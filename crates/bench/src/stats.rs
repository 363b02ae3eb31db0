//! Measurements, medians over rounds, and the Markdown tables every benchmark prints.

use std::collections::BTreeMap;

/// One timed phase against one server: how many operations, in how long, each
/// operation's latency, and the CPU the server (and the load generator) used.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ops: u64,
    pub elapsed: f64,
    /// Per-operation latencies in seconds (may be empty: then no percentiles).
    pub latencies: Vec<f64>,
    /// CPU seconds the server process used during the phase.
    pub server_cpu: f64,
    /// CPU seconds the clients used (the Python drivers or the Rust load generator).
    pub client_cpu: f64,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.ops as f64 / self.elapsed
        } else {
            0.0
        }
    }

    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }

    /// Server CPU microseconds per operation.
    pub fn cpu_us_per_op(&self) -> f64 {
        if self.ops == 0 {
            0.0
        } else {
            self.server_cpu / self.ops as f64 * 1e6
        }
    }

    /// Combine concurrent clients' samples of the same phase: ops add up, the
    /// elapsed time is the longest, latencies are pooled.
    pub fn merge(parts: Vec<Sample>) -> Sample {
        let mut out = Sample::default();
        for p in parts {
            out.ops += p.ops;
            out.elapsed = out.elapsed.max(p.elapsed);
            out.latencies.extend(p.latencies);
            out.client_cpu += p.client_cpu;
        }
        out
    }
}

/// The `p`-th percentile (0..=100) by nearest rank; 0 for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Samples per (scenario, system), in rounds.
#[derive(Default)]
pub struct Results {
    samples: BTreeMap<(String, String), Vec<Sample>>,
    order: Vec<String>,
}

impl Results {
    pub fn add(&mut self, scenario: &str, system: &str, sample: Sample) {
        if !self.order.iter().any(|s| s == scenario) {
            self.order.push(scenario.to_owned());
        }
        self.samples
            .entry((scenario.to_owned(), system.to_owned()))
            .or_default()
            .push(sample);
    }

    /// Median over rounds of `metric` of a scenario and system.
    pub fn median(&self, scenario: &str, system: &str, metric: Metric) -> f64 {
        let values: Vec<f64> = self
            .samples
            .get(&(scenario.to_owned(), system.to_owned()))
            .map(|v| v.iter().map(|s| metric.of(s)).collect())
            .unwrap_or_default();
        median(&values)
    }

    pub fn rounds(&self, scenario: &str, system: &str) -> usize {
        self.samples
            .get(&(scenario.to_owned(), system.to_owned()))
            .map_or(0, Vec::len)
    }

    pub fn scenarios(&self) -> &[String] {
        &self.order
    }

    /// A Markdown table: one row per scenario and metric, columns `a`, `b`, `a/b`.
    pub fn table(&self, a: &str, b: &str, metrics: &[Metric]) -> String {
        let mut out =
            format!("| scenario | metric | {a} | {b} | {a} / {b} |\n|---|---|--:|--:|--:|\n");
        for scenario in &self.order {
            for &metric in metrics {
                if self.rounds(scenario, a) == 0 && self.rounds(scenario, b) == 0 {
                    continue;
                }
                let va = self.median(scenario, a, metric);
                let vb = self.median(scenario, b, metric);
                if metric.skip(va) && metric.skip(vb) {
                    continue;
                }
                out.push_str(&format!(
                    "| {scenario} | {} | {} | {} | {} |\n",
                    metric.label(),
                    metric.fmt(va),
                    metric.fmt(vb),
                    ratio(va, vb)
                ));
            }
        }
        out
    }
}

pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "–".to_owned()
    }
}

/// What a table row shows (each a median over rounds).
#[derive(Clone, Copy, Debug)]
pub enum Metric {
    Rate(&'static str),
    P50,
    P99,
    CpuPerOp,
    ClientCpuShare,
    ClientCpuPerOp,
}

impl Metric {
    pub fn of(self, s: &Sample) -> f64 {
        match self {
            Metric::Rate(_) => s.rate(),
            Metric::P50 => s.percentile(50.0) * 1e3,
            Metric::P99 => s.percentile(99.0) * 1e3,
            Metric::CpuPerOp => s.cpu_us_per_op(),
            Metric::ClientCpuPerOp => {
                if s.ops == 0 {
                    0.0
                } else {
                    s.client_cpu / s.ops as f64 * 1e6
                }
            }
            Metric::ClientCpuShare => {
                if s.elapsed > 0.0 {
                    s.client_cpu / s.elapsed
                } else {
                    0.0
                }
            }
        }
    }

    fn label(self) -> String {
        match self {
            Metric::Rate(unit) => unit.to_owned(),
            Metric::P50 => "p50 latency (ms)".to_owned(),
            Metric::P99 => "p99 latency (ms)".to_owned(),
            Metric::CpuPerOp => "server CPU µs/op".to_owned(),
            Metric::ClientCpuShare => "client CPU (cores)".to_owned(),
            Metric::ClientCpuPerOp => "client CPU µs/op".to_owned(),
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Metric::Rate(_) => format!("{v:.0}"),
            Metric::P50 | Metric::P99 => format!("{v:.3}"),
            Metric::CpuPerOp | Metric::ClientCpuPerOp => format!("{v:.1}"),
            Metric::ClientCpuShare => format!("{v:.2}"),
        }
    }

    fn skip(self, v: f64) -> bool {
        !v.is_finite() || (matches!(self, Metric::P50 | Metric::P99) && v == 0.0)
    }
}

/// "met" / "MISSED" for a target line.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
