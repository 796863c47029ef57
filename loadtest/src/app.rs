//! Wiring: turn parsed CLI arguments into a run, then report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::{ConnMode, ReplayArgs, SynthArgs, TransportArgs};
use crate::clientaddr::{ClientIpMode, SYNTHETIC_CLIENTS};
use crate::plot;
use crate::progress::Progress;
use crate::replay;
use crate::request::PlannedRequest;
use crate::runner::{self, RunConfig};
use crate::schedule::{Burst, Pacing, RateSchedule};
use crate::sources::SourceRange;
use crate::stats::{SharedStats, Stats};
use crate::summary::Summary;
use crate::synth::{SynthConfig, SynthGen};
use crate::transport::{Connector, Target, tls_config};

/// Small delay before the first intended send so workers are up.
const LEAD: Duration = Duration::from_millis(20);

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
    let burst = args.burst.as_deref().map(Burst::parse).transpose()?;
    let mut generator = SynthGen::new(
        SynthConfig {
            sites: args.sites,
            ips: args.ips,
            bot_share: args.bot_share,
            batch: args.batch,
            payload_bytes: args.payload_bytes,
        },
        args.seed,
    );
    let jobs = RateSchedule::new(args.rate, args.duration, burst)
        .map(move |off| generator.next_request(Some(off + LEAD)));
    execute(&args.transport, sources, jobs).await
}

/// Runs `replay` and prints the report.
pub async fn replay(args: ReplayArgs) -> Result<Summary> {
    let speed_ok = args.speed > 0.0 && args.speed.is_finite();
    if !args.max && !speed_ok {
        bail!("--speed must be > 0");
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let records =
        replay::parse_records(&text).with_context(|| format!("parsing {}", args.file.display()))?;
    if records.is_empty() {
        bail!("{} has no records", args.file.display());
    }
    let sources = parse_sources(&args.transport)?;
    let pacing = if args.max {
        Pacing::Max
    } else {
        Pacing::Speed(args.speed)
    };
    let default_host = match &args.host {
        Some(h) => h.clone(),
        None => url::Url::parse(&args.transport.target)?
            .host_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let mut planned = replay::plan(&records, pacing, &default_host);
    for p in &mut planned {
        p.offset = p.offset.map(|o| o + LEAD);
    }
    execute(&args.transport, sources, planned).await
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

async fn execute<I>(t: &TransportArgs, sources: Option<SourceRange>, jobs: I) -> Result<Summary>
where
    I: IntoIterator<Item = PlannedRequest>,
{
    if t.connections == 0 {
        bail!("--connections must be at least 1");
    }
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
    let summary = Summary::from_stats(&stats, is_tls);
    report(t, &summary, &stats)?;
    Ok(summary)
}

fn report(t: &TransportArgs, summary: &Summary, stats: &Stats) -> Result<()> {
    if t.json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print!("{}", summary.render_text());
    }
    for e in &stats.error_samples {
        eprintln!("error: {e}");
    }
    if let Some(path) = &t.plot {
        plot::write_svg(path, &stats.latency, &stats.per_second)?;
        if !t.json {
            println!("plot       {}", path.display());
        }
    }
    Ok(())
}
