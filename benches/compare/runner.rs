//! The table: its rows (a builder instead of positional arguments), the runner that prints and keeps them, and the
//! markdown BENCHMARKS.md holds. (Alternated runs and medians: `timing`.)

use std::fmt::Write as _;

use crate::server::Kind;

/// One line of the table.
pub struct Row {
    pub server: &'static str,
    pub workload: String,
    pub baseline: String,
    pub unit: &'static str,
    pub base: f64,
    pub ours: f64,
    /// Target for ours / base, if the issue sets one.
    pub target: Option<f64>,
    pub latency: String,
}

impl Row {
    /// A row of `workload` against `baseline`, measured in `unit`.
    pub fn new(server: &'static str, workload: impl Into<String>, baseline: &str, unit: &'static str) -> Row {
        Row {
            server,
            workload: workload.into(),
            baseline: baseline.to_string(),
            unit,
            base: f64::NAN,
            ours: f64::NAN,
            target: None,
            latency: String::new(),
        }
    }

    /// The baseline's figure and ours.
    pub fn values(mut self, base: f64, ours: f64) -> Row {
        (self.base, self.ours) = (base, ours);
        self
    }

    /// The target for ours / baseline.
    pub fn target(mut self, t: f64) -> Row {
        self.target = Some(t);
        self
    }

    /// The latency column (or a note).
    pub fn latency(mut self, s: String) -> Row {
        self.latency = s;
        self
    }

    pub fn ratio(&self) -> f64 {
        self.ours / self.base
    }
}

pub struct Runner {
    pub rounds: usize,
    pub rows: Vec<Row>,
    /// (server, value size, series, GiB/s) for the plot.
    pub sizes: Vec<(&'static str, usize, &'static str, f64)>,
}

impl Runner {
    /// Prints and records one table row.
    pub fn record(&mut self, row: Row) {
        let verdict = match row.target {
            Some(t) if row.ratio() >= t => format!("met (>= {t}x)"),
            Some(t) => format!("MISSED (< {t}x)"),
            None => String::new(),
        };
        println!(
            "{:<7} {:<44} {:<34} {:>10.2} {:>10.2} {:<6} {:>6.2}x {:<16} {}",
            row.server,
            row.workload,
            row.baseline,
            row.base,
            row.ours,
            row.unit,
            row.ratio(),
            verdict,
            row.latency
        );
        self.rows.push(row);
    }
}

pub fn markdown(rows: &[Row], machine: &str) -> String {
    let mut s = String::new();
    writeln!(s, "Machine: {machine}\n").unwrap();
    writeln!(
        s,
        "| server | workload | baseline | baseline | ours | unit | ours / baseline | target | latency (ours) |"
    )
    .unwrap();
    writeln!(s, "|---|---|---|---:|---:|---|---:|---|---|").unwrap();
    for r in rows {
        let target = match r.target {
            Some(t) if r.ratio() >= t => format!(">= {t}x: met"),
            Some(t) => format!(">= {t}x: **missed**"),
            None => String::new(),
        };
        writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {} | {:.2}x | {} | {} |",
            r.server,
            r.workload.trim(),
            r.baseline,
            r.base,
            r.ours,
            r.unit,
            r.ratio(),
            target,
            r.latency
        )
        .unwrap();
    }
    s
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let version = |k: Kind| -> String {
        let out = std::process::Command::new(k.binary())
            .arg("--version")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find(|w| w.starts_with("v="))
            .unwrap_or("?")
            .trim_start_matches("v=")
            .to_string()
    };
    format!(
        "{cores} cores ({cpu}), loopback; Redis {}, Valkey {}",
        version(Kind::Redis),
        version(Kind::Valkey)
    )
}
