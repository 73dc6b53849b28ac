//! `vpc-cni simulate`: run a scenario file through the cluster simulator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use vpc_cni_ipam::{PolicyKind, Time};
use vpc_cni_sim::{Cluster, Report, Scenario, chart};

use crate::common::{DataArgs, Output};

/// Runs a scenario (TOML, see examples/README.md) in virtual time: node groups whose nodes run the
/// same warm-pool policy as the daemon, against a simulated VPC with AWS's subnet placement,
/// instance limits, error codes and account-wide EC2 throttling. Reports addresses attached,
/// assigned and unused per node group, EC2 calls and errors, pod address waits, and subnet free
/// addresses and free /28 blocks at the end and at the worst moment.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  vpc-cni simulate examples/seed-003-prefix-burst.toml\n  \
    vpc-cni simulate examples/prefix-24-exhaustion.toml --series out.csv --chart out.svg\n  \
    vpc-cni simulate examples/bench-1000-nodes.toml --output json\n  \
    vpc-cni simulate examples/churn-compare.toml --compare aws,adaptive --chart idle.svg\n  \
    vpc-cni simulate examples/seed-003-prefix-burst.toml --policy adaptive"
)]
pub struct Args {
    /// Scenario file (TOML).
    scenario: PathBuf,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    /// Write the time series to FILE (.csv, or .json for JSON).
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    series: Option<PathBuf>,
    /// Write an SVG chart of attached, assigned and subnet-free addresses over time (with
    /// --compare: the idle addresses of each policy, and the pods, over time).
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run every node group with this pool policy (VPC_CNI_POOL_POLICY): aws or adaptive.
    #[arg(long, value_name = "POLICY", value_parser = parse_policy, conflicts_with = "compare")]
    policy: Option<PolicyKind>,
    /// Run the scenario once per policy (e.g. aws,adaptive) and print them side by side. With a
    /// `[sweep]` in the scenario, `aws` also runs every combination of the swept settings, and
    /// the runs that beat the other policies on both idle addresses and p99 wait are named.
    #[arg(long, value_name = "POLICY,…", value_delimiter = ',', value_parser = parse_policy)]
    compare: Vec<PolicyKind>,
    /// Simulations run at once when comparing (default: the CPUs).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
}

fn parse_policy(v: &str) -> Result<PolicyKind, String> {
    PolicyKind::parse(v).map_err(|e| e.to_string())
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.scenario)
        .with_context(|| format!("cannot read {}", args.scenario.display()))?;
    let mut sc = Scenario::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.scenario.display()))?;
    if let Some(seed) = args.seed {
        sc.seed = seed;
    }
    let table = args.data.table()?;
    if !args.compare.is_empty() {
        let opts = crate::simulate_compare::Options {
            policies: args.compare.clone(),
            threads: args.threads,
            chart: args.chart.clone(),
            output: args.output,
        };
        return crate::simulate_compare::run(&sc, &table, &opts);
    }
    if !sc.sweep.is_empty() {
        eprintln!(
            "note: this scenario has a [sweep]; it is used with --compare (e.g. --compare aws,adaptive)"
        );
    }
    if let Some(policy) = args.policy {
        let v = vpc_cni_sim::compare::Variant {
            label: policy.to_string(),
            policy,
            env: Default::default(),
        };
        sc = vpc_cni_sim::compare::apply(&sc, &v);
    }
    let mut cluster = Cluster::new(&sc, &table)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.scenario.display()))?;
    let started = Instant::now();
    let end = cluster.end().as_millis();
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} simulating [{bar:40}] {pos}% {msg}")
            .expect("valid template"),
    );
    let step = (end / 200).max(1000);
    let mut t = 0;
    while t < end {
        t = (t + step).min(end);
        cluster.run_until(Time(t));
        // Drawn only on a terminal, and only once the run has taken a second.
        if started.elapsed() > Duration::from_secs(1) {
            bar.set_position(t * 100 / end.max(1));
            bar.set_message(format!("{} pod events", cluster.pod_events));
        }
    }
    bar.finish_and_clear();
    let wall = started.elapsed();
    let report = cluster.run();
    if let Some(path) = &args.series {
        let body = if path.extension().is_some_and(|e| e == "json") {
            serde_json::to_string_pretty(&report.series)?
        } else {
            report.series_csv()
        };
        std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, chart::svg(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print(&sc, &report, wall),
    }
    Ok(())
}

fn print(sc: &Scenario, r: &Report, wall: Duration) {
    println!(
        "{} · {:.0} s simulated in {:.2} s · {} pod events",
        if sc.name.is_empty() {
            "scenario"
        } else {
            &sc.name
        },
        r.duration_s,
        wall.as_secs_f64(),
        r.pod_events
    );
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "Group",
        "Type",
        "Nodes",
        "Pods",
        "Pending",
        "Attached",
        "Unused (waste)",
        "ENIs",
        "Prefixes",
        "Waited",
        "Wait p50/p99/max (s)",
    ]);
    for g in &r.groups {
        t.add_row(vec![
            g.end.name.clone(),
            g.end.instance_type.clone(),
            g.end.nodes.to_string(),
            g.end.pods.to_string(),
            g.end.pending.to_string(),
            g.end.attached.to_string(),
            format!("{} ({:.0}%)", g.unused, g.waste_pct),
            g.end.enis.to_string(),
            g.end.prefixes.to_string(),
            format!("{}/{}", g.wait.waited, g.wait.pods),
            format!(
                "{:.1} / {:.1} / {:.1}",
                g.wait.p50_s, g.wait.p99_s, g.wait.max_s
            ),
        ]);
    }
    println!("{t}");
    let mut s = Table::new();
    s.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "Subnet",
        "CIDR",
        "Holds",
        "Free at end",
        "Free /28 at end",
        "Worst free (at)",
        "Worst free /28 (at)",
    ]);
    for x in &r.subnets {
        s.add_row(vec![
            x.id.clone(),
            x.cidr.clone(),
            x.role.clone(),
            x.free_addresses.to_string(),
            x.free_prefix_blocks.to_string(),
            format!(
                "{} ({:.0} s)",
                x.worst_free_addresses.0, x.worst_free_addresses.1
            ),
            format!(
                "{} ({:.0} s)",
                x.worst_free_prefix_blocks.0, x.worst_free_prefix_blocks.1
            ),
        ]);
    }
    println!("{s}");
    for x in &r.subnets {
        if let Some(e) = &x.exhausted {
            let role = if x.role.is_empty() {
                String::new()
            } else {
                format!(" ({})", x.role)
            };
            println!(
                "Subnet {}{role} ran out at {:.0} s: {} ({} errors): {}",
                x.id, e.at_s, e.code, e.errors, e.why
            );
        }
    }
    let calls: Vec<String> = r
        .ec2_calls
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("EC2 calls: {}", calls.join(" "));
    let errors: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "Throttled: {} · errors: {} · failed ADD attempts: {}",
        r.throttled,
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join(" ")
        },
        r.no_address_attempts
    );
    let mut failures: Vec<(&String, usize)> = Vec::new();
    for f in &r.node_launch_failures {
        match failures.iter_mut().find(|(g, _)| *g == f) {
            Some((_, n)) => *n += 1,
            None => failures.push((f, 1)),
        }
    }
    for (f, n) in failures {
        println!("Node launches failed ({n}×): {f}");
    }
}
