//! Wiring: turn parsed CLI arguments into a run, then report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::admin::{AdminClient, EdgeCounters, EdgeReport};
use crate::cli::{ConnMode, ReplayArgs, SynthArgs, TransportArgs};
use crate::clientaddr::{ClientIpMode, SYNTHETIC_CLIENTS};
use crate::pageviews::{self, Classifier};
use crate::plot;
use crate::progress::Progress;
use crate::replay::{self, Format, InputReport};
use crate::request::PlannedRequest;
use crate::runner::{self, RunConfig};
use crate::schedule::{Burst, Pacing, RateSchedule};
use crate::sources::SourceRange;
use crate::stats::{SharedStats, Stats};
use crate::summary::{RunInfo, Summary};
use crate::synth::{SynthConfig, SynthGen};
use crate::transport::{Connector, Target, tls_config};

/// Small delay before the first intended send so workers are up.
const LEAD: Duration = Duration::from_millis(20);

/// Longest wait after the run for the edge to count every answered request
/// (it counts in its logging phase, after the answer is sent).
const EDGE_COUNT_WAIT: Duration = Duration::from_secs(5);

/// The host of `--target` (the Host header and SNI when nothing else names one).
fn target_host(t: &TransportArgs) -> Result<String> {
    Ok(url::Url::parse(&t.target)
        .with_context(|| format!("invalid --target {:?}", t.target))?
        .host_str()
        .unwrap_or_default()
        .to_owned())
}

/// The settings common to every run, for the report's title.
fn run_info(t: &TransportArgs, command: &str, load: String) -> RunInfo {
    RunInfo {
        command: command.to_owned(),
        target: t.target.clone(),
        load,
        connections: t.connections,
        mode: match t.mode {
            ConnMode::Keepalive => "keepalive",
            ConnMode::NewConn => "new-conn",
        }
        .to_owned(),
        protocol: if t.http2 { "HTTP/2" } else { "HTTP/1.1" }.to_owned(),
    }
}

/// Runs `synth` and prints the report.
pub async fn synth(args: SynthArgs) -> Result<Summary> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be > 0");
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!("--duration must be > 0");
    }
    if args.sites == 0 || args.ips == 0 || args.batch == 0 {
        bail!("--sites, --ips and --batch must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.bot_share) {
        bail!("--bot-share must be between 0 and 1");
    }
    let sources = parse_sources(&args.transport)?;
    if args.transport.client_ip_mode != ClientIpMode::Bind && args.ips > SYNTHETIC_CLIENTS {
        bail!("--ips is at most {SYNTHETIC_CLIENTS} (the synthetic range 198.18.0.0/15)");
    }
    if let Some(r) = &sources
        && r.len() < args.ips
    {
        bail!(
            "--ips {} needs at least as many --source-ips addresses (range has {})",
            args.ips,
            r.len()
        );
    }
    let host = match (&args.host, args.sites) {
        (Some(h), 1) => Some(h.clone()),
        (Some(_), n) => bail!(
            "--host names the one site of --sites 1; with --sites {n} the hosts are \
             site1.example … site{n}.example"
        ),
        (None, 1) => Some(target_host(&args.transport)?),
        (None, _) => None,
    };
    let burst = args.burst.as_deref().map(Burst::parse).transpose()?;
    let mut load = format!("{} req/s for {} s", args.rate, args.duration);
    if let Some(b) = &burst {
        load.push_str(&format!(", bursts x{} every {} s", b.factor, b.period_s));
    }
    let mut generator = SynthGen::new(
        SynthConfig {
            sites: args.sites,
            host,
            ips: args.ips,
            bot_share: args.bot_share,
            batch: args.batch,
            payload_bytes: args.payload_bytes,
        },
        args.seed,
    );
    let jobs = RateSchedule::new(args.rate, args.duration, burst)
        .map(move |off| generator.next_request(Some(off + LEAD)));
    let info = run_info(&args.transport, "synth", load);
    execute(&args.transport, sources, jobs, info, None).await
}

/// Runs `replay` and prints the report.
pub async fn replay(args: ReplayArgs) -> Result<Summary> {
    let speed_ok = args.speed > 0.0 && args.speed.is_finite();
    if !args.max && !speed_ok {
        bail!("--speed must be > 0");
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let file = args.file.display();
    let parsed = replay::parse_records(&text, args.strict)
        .with_context(|| format!("parsing {file} (--strict)"))?;
    if parsed.records.is_empty() {
        match parsed.first_malformed.first() {
            Some(e) => bail!(
                "{file} has no well-formed records ({} malformed; first: {e})",
                parsed.malformed
            ),
            None => bail!("{file} has no records"),
        }
    }
    let sources = parse_sources(&args.transport)?;
    let pacing = if args.max {
        Pacing::Max
    } else {
        Pacing::Speed(args.speed)
    };
    let target_host = target_host(&args.transport)?;
    let conversion = if args.as_events {
        if parsed.format != Format::Combined {
            bail!(
                "--as-events reads combined/common access logs; {file} is NDJSON \
                 (its requests are replayed as recorded without --as-events)"
            );
        }
        let classifier = match &args.asset_extensions {
            Some(list) => Classifier::from_list(list),
            None => Classifier::default(),
        };
        let c = pageviews::convert(
            &parsed.records,
            &classifier,
            args.host.as_deref(),
            &target_host,
        );
        if c.events.is_empty() {
            bail!(
                "{file} has no page views (GET answered 2xx/304, not an asset) among its {} records",
                parsed.records.len()
            );
        }
        Some(c)
    } else {
        None
    };
    let records = conversion.as_ref().map_or(&parsed.records, |c| &c.events);
    let default_host = args.host.clone().unwrap_or(target_host);
    let mut planned = replay::plan(records, pacing, &default_host);
    for p in &mut planned {
        p.offset = p.offset.map(|o| o + LEAD);
    }
    let input = InputReport::new(&parsed, planned.len() as u64, conversion.as_ref());
    let mut load = match pacing {
        Pacing::Max => "as fast as possible (--max)".to_owned(),
        Pacing::Speed(x) => format!("recorded pacing x{x}"),
    };
    if args.as_events {
        load.push_str(", page views as events");
    }
    let info = run_info(&args.transport, "replay", load);
    execute(&args.transport, sources, planned, info, Some(input)).await
}

fn parse_sources(t: &TransportArgs) -> Result<Option<SourceRange>> {
    if t.source_ips.is_some() && t.client_ip_mode != ClientIpMode::Bind {
        bail!(
            "--source-ips applies to --client-ip-mode bind only \
             (the other modes send the client address to the target instead)"
        );
    }
    Ok(t.source_ips
        .as_deref()
        .map(SourceRange::parse)
        .transpose()?)
}

async fn execute<I>(
    t: &TransportArgs,
    sources: Option<SourceRange>,
    jobs: I,
    info: RunInfo,
    input: Option<InputReport>,
) -> Result<Summary>
where
    I: IntoIterator<Item = PlannedRequest>,
{
    if t.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let admin = t
        .admin
        .as_deref()
        .map(|a| AdminClient::new(a, t.admin_token_file.as_deref()))
        .transpose()?;
    let before = match &admin {
        Some(a) => Some(
            a.scrape()
                .await
                .context("reading the edge's metrics before the run (--admin)")?,
        ),
        None => None,
    };
    let target = Target::resolve(&t.target).await?;
    let tls = if target.tls {
        Some(Arc::new(tls_config(
            t.insecure,
            t.ca_file.as_deref(),
            t.http2,
            !t.no_tls_resumption,
        )?))
    } else {
        None
    };
    let is_tls = target.tls;
    let connector = Connector::new(target, tls, t.http2);
    let cfg = RunConfig {
        connections: t.connections,
        keepalive: t.mode == ConnMode::Keepalive,
        sources,
        client_ip_mode: t.client_ip_mode,
        timeout: Duration::from_millis(t.timeout_ms.max(1)),
    };
    let stats = SharedStats::default();
    let start = Instant::now();
    let progress = Progress::start(stats.clone(), start, t.quiet);
    let result = runner::run(connector, cfg, jobs, stats.clone(), start).await;
    if let Some(p) = progress {
        p.finish();
    }
    result?;
    let stats: Stats = stats.snapshot();
    let mut summary = Summary::from_stats(&stats, is_tls);
    summary.run = info;
    summary.input = input;
    summary.judge(t.max_error_rate);
    if let (Some(a), Some(before)) = (&admin, &before) {
        match edge_report(a, before, summary.completed).await {
            Ok(r) => summary.edge = Some(r),
            Err(e) => eprintln!("edge-loadtest: reading the edge's metrics after the run: {e:#}"),
        }
    }
    report(t, &summary, &stats)?;
    Ok(summary)
}

/// Reads the edge's counters until it has counted `answered` requests more
/// than `before` (or [`EDGE_COUNT_WAIT`] passed), and reports the difference.
async fn edge_report(a: &AdminClient, before: &EdgeCounters, answered: u64) -> Result<EdgeReport> {
    let deadline = Instant::now() + EDGE_COUNT_WAIT;
    loop {
        let after = a.scrape().await?;
        let report = EdgeReport::between(a.url().as_str(), before, &after, answered);
        if report.complete || Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn report(t: &TransportArgs, summary: &Summary, stats: &Stats) -> Result<()> {
    if t.json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print!("{}", summary.render_text());
    }
    for e in summary.error_kinds.iter().take(5) {
        eprintln!("error: {} × {}", e.count, e.error);
    }
    if let Some(path) = &t.plot {
        plot::write_svg(path, stats, &summary.run.title())?;
        if !t.json {
            println!("plot       {}", path.display());
        }
    }
    Ok(())
}
