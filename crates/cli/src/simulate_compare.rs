//! `vpc-cni simulate --compare`: one scenario under several pool policies (and the `aws` policy
//! over the scenario's `[sweep]`), side by side, with the runs that beat another on both idle
//! addresses and p99 wait named.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use vpc_cni_ipam::PolicyKind;
use vpc_cni_limits::LimitsTable;
use vpc_cni_sim::compare::{self, Summary, Variant};
use vpc_cni_sim::{Report, Scenario, chart};

use crate::common::Output;

/// What `--compare` was asked.
pub struct Options {
    /// Policies to compare.
    pub policies: Vec<PolicyKind>,
    /// Simulations at once.
    pub threads: Option<usize>,
    /// Where to write the chart.
    pub chart: Option<PathBuf>,
    /// Output format.
    pub output: Output,
}

/// Label of the `aws` run with the scenario's own settings when a sweep adds others.
const AS_WRITTEN: &str = "aws (as written)";

#[derive(Serialize)]
struct JsonOut<'a> {
    runs: Vec<&'a Summary>,
    skipped: Vec<&'a str>,
    /// Per non-aws policy: the aws runs that beat it on both idle mean and p99 wait.
    beaten_by: BTreeMap<String, Vec<&'a str>>,
}

/// Run the comparison and print it.
pub fn run(sc: &Scenario, table: &LimitsTable, opts: &Options) -> anyhow::Result<()> {
    let mut variants = compare::variants(sc, &opts.policies);
    if !sc.sweep.is_empty() && opts.policies.contains(&PolicyKind::Aws) {
        variants.insert(
            0,
            Variant {
                label: AS_WRITTEN.into(),
                policy: PolicyKind::Aws,
                env: BTreeMap::new(),
            },
        );
    }
    let threads = opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let name = if sc.name.is_empty() {
        "scenario"
    } else {
        &sc.name
    };
    eprintln!(
        "comparing {} run(s) of {name} on {threads} thread(s)",
        variants.len()
    );
    let started = Instant::now();
    let finished = AtomicUsize::new(0);
    let total = variants.len();
    let outcomes = compare::run_all(sc, table, &variants, threads, &|i, out| {
        let k = finished.fetch_add(1, Ordering::SeqCst) + 1;
        match out {
            Ok((s, _)) => eprintln!(
                "[{k}/{total}] {}: idle mean {:.0}, p99 wait {:.1} s ({:.1} s elapsed)",
                variants[i].label,
                s.idle_mean,
                s.wait.p99_s,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("[{k}/{total}] skipped: {e}"),
        }
    });
    let runs: Vec<(&Summary, &Report)> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|(s, r)| (s, r)))
        .collect();
    let skipped: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(String::as_str))
        .collect();
    let mut beaten_by: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (other, _) in runs.iter().filter(|(s, _)| s.policy != PolicyKind::Aws) {
        let winners = runs
            .iter()
            .filter(|(s, _)| s.policy == PolicyKind::Aws && s.dominates(other))
            .map(|(s, _)| s.label.as_str())
            .collect();
        beaten_by.insert(other.label.clone(), winners);
    }
    if let Some(path) = &opts.chart {
        let shown: Vec<(&str, &Report)> = runs
            .iter()
            .filter(|(s, _)| {
                s.policy != PolicyKind::Aws || s.label == AS_WRITTEN || sc.sweep.is_empty()
            })
            .map(|(s, r)| (s.label.as_str(), *r))
            .collect();
        std::fs::write(path, chart::compare_svg(&shown))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match opts.output {
        Output::Json => {
            let out = JsonOut {
                runs: runs.iter().map(|(s, _)| *s).collect(),
                skipped,
                beaten_by,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table => print(name, &sc.sweep, &runs, &skipped, &beaten_by, started),
    }
    Ok(())
}

/// EC2 calls in all, then by action named by its verb (the Describe calls of every kind summed,
/// so the list adds up to the total).
fn calls(s: &Summary) -> String {
    let verb = |k: &str| {
        let end = k[1..].find(char::is_uppercase).map_or(k.len(), |i| i + 1);
        k[..end].to_string()
    };
    let mut by_verb: std::collections::BTreeMap<String, u64> = Default::default();
    for (k, v) in &s.ec2_calls {
        *by_verb.entry(verb(k)).or_default() += v;
    }
    let parts: Vec<String> = by_verb.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{} ({})", s.ec2_total, parts.join(", "))
}

fn print(
    name: &str,
    sweep: &BTreeMap<String, Vec<vpc_cni_sim::scenario::SweepValue>>,
    runs: &[(&Summary, &Report)],
    skipped: &[&str],
    beaten_by: &BTreeMap<String, Vec<&str>>,
    started: Instant,
) {
    println!(
        "{name} · {} run(s) in {:.1} s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    // Swept settings get a column each, named by their variable, so rows stay short.
    let swept: Vec<&String> = sweep.keys().collect();
    let mut header: Vec<String> = vec!["Policy".into()];
    header.extend(swept.iter().map(|k| k.to_string()));
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(
        header.into_iter().chain(
            [
                "Idle mean",
                "Idle peak",
                "Wait p50/p99/max (s)",
                "Pending",
                "EC2 calls",
                "Throttled",
                "Subnet low-water",
            ]
            .map(String::from),
        ),
    );
    for (s, _) in runs {
        let policy = if s.label == AS_WRITTEN {
            AS_WRITTEN.to_string()
        } else {
            s.policy.to_string()
        };
        let mut row = vec![policy];
        row.extend(
            swept
                .iter()
                .map(|k| s.env.get(*k).cloned().unwrap_or_default()),
        );
        t.add_row(row.into_iter().chain([
            format!("{:.1}", s.idle_mean),
            s.idle_peak.to_string(),
            format!(
                "{:.1} / {:.1} / {:.1}",
                s.wait.p50_s, s.wait.p99_s, s.wait.max_s
            ),
            s.pending.to_string(),
            calls(s),
            s.throttled.to_string(),
            s.subnet_low_water.to_string(),
        ]));
    }
    println!("{t}");
    for e in skipped {
        println!("Skipped: {e}");
    }
    let aws_runs = runs
        .iter()
        .filter(|(s, _)| s.policy == PolicyKind::Aws)
        .count();
    let reference = runs
        .iter()
        .find(|(s, _)| s.policy == PolicyKind::Aws && (s.label == AS_WRITTEN || s.label == "aws"));
    for (label, winners) in beaten_by {
        let Some((me, _)) = runs.iter().find(|(s, _)| &s.label == label) else {
            continue;
        };
        if let Some((aws, _)) = reference {
            let pct = |a: f64, b: f64| {
                if b > 0.0 {
                    format!(" ({:+.0} %)", 100.0 * (a - b) / b)
                } else {
                    String::new()
                }
            };
            println!(
                "{label} against {}: idle mean {:.1} vs {:.1}{}, p99 wait {:.1} s vs {:.1} s, pending {} vs {}, EC2 calls {} vs {}{}",
                aws.label,
                me.idle_mean,
                aws.idle_mean,
                pct(me.idle_mean, aws.idle_mean),
                me.wait.p99_s,
                aws.wait.p99_s,
                me.pending,
                aws.pending,
                me.ec2_total,
                aws.ec2_total,
                pct(me.ec2_total as f64, aws.ec2_total as f64)
            );
        }
        if aws_runs == 0 {
            continue;
        }
        if winners.is_empty() {
            println!(
                "No aws run of the {aws_runs} holds fewer idle addresses with a lower p99 wait than {label}."
            );
        } else {
            println!(
                "{} aws run(s) beat {label} on both idle addresses and p99 wait: {}",
                winners.len(),
                winners.join("; ")
            );
        }
    }
}
