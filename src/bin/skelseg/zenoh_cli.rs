//! Zenoh flags of `stream` and `send` (`--zenoh-connect`, `--zenoh-listen`, `--zenoh-config`,
//! `--worker-id`, `--publish-events zenoh`), and what they open.

use std::path::PathBuf;

use clap::Args;

/// Where `stream` publishes its events besides stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PublishEvents {
    /// Publish every event at `{prefix}/events/{stream}`.
    Zenoh,
}

/// Zenoh session and worker flags.
#[derive(Clone, Debug, Default, Args)]
pub struct ZenohArgs {
    /// Zenoh endpoint to connect to, e.g. tcp/192.168.1.10:7447 (repeatable).
    #[arg(long = "zenoh-connect", value_name = "ENDPOINT")]
    pub connect: Vec<String>,
    /// Zenoh endpoint to listen on (repeatable; default tcp/127.0.0.1:0, loopback only).
    #[arg(long = "zenoh-listen", value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// Zenoh's own JSON5 configuration file (applied first; what it does not set keeps
    /// skelseg's defaults: multicast scouting off, a 500 ms link lease).
    #[arg(long = "zenoh-config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This worker's id in `{prefix}/workers/{id}` (default: the Zenoh session id).
    #[arg(long)]
    pub worker_id: Option<String>,
}

#[cfg(feature = "zenoh")]
mod on {
    use std::sync::Arc;

    use anyhow::{Context, Result, bail};
    use skelseg::cluster::{EventSink, Worker, ZenohConfig};
    use skelseg::source::NetConfig;
    use skelseg::source::zenoh::{ZenohSource, ZenohSourceConfig};

    use super::ZenohArgs;

    impl ZenohArgs {
        fn config(&self) -> ZenohConfig {
            ZenohConfig {
                connect: self.connect.clone(),
                listen: self.listen.clone(),
                config_file: self.config.clone(),
            }
        }

        /// Opens the session.
        pub fn session(&self) -> Result<zenoh::Session> {
            self.config().open().context("opening the Zenoh session")
        }
    }

    /// A worker of `stream`: its source(s) and, when asked, its event sink.
    pub struct ZenohWorker {
        pub sources: Vec<ZenohSource>,
        pub sink: Option<EventSink>,
    }

    /// Joins as one worker reading `keyexprs` (all under one prefix) and publishing events when
    /// `publish` is set. The sink is created before the sources, so it knows the last committed
    /// ends before the worker takes any stream.
    pub fn open_worker(
        args: &ZenohArgs,
        keyexprs: &[String],
        publish: bool,
        net: &NetConfig,
    ) -> Result<ZenohWorker> {
        let prefixes: Vec<&str> = keyexprs
            .iter()
            .map(|k| skelseg::cluster::split_frames_keyexpr(k).map(|(p, _)| p))
            .collect::<Option<_>>()
            .context(
                "a zenoh: source must look like PREFIX/frames/..., e.g. zenoh:skelseg/frames/**",
            )?;
        let prefix = prefixes.first().copied().unwrap_or(skelseg::cluster::DEFAULT_PREFIX);
        if prefixes.iter().any(|p| *p != prefix) {
            bail!("every zenoh: source of one worker must share its prefix, found {prefixes:?}");
        }
        let session = args.session()?;
        let worker: Arc<Worker> = Worker::join(session, prefix, args.worker_id.as_deref())?;
        let sink = publish.then(|| EventSink::new(&worker)).transpose()?;
        let cfg = ZenohSourceConfig { net: net.clone(), ..ZenohSourceConfig::default() };
        let sources = keyexprs
            .iter()
            .map(|k| {
                ZenohSource::open(&worker, k, cfg.clone())
                    .with_context(|| format!("opening zenoh:{k}"))
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::info!(worker = worker.id(), workers = ?worker.members(), "joined as a Zenoh worker");
        Ok(ZenohWorker { sources, sink })
    }

    /// A source of every stream under `keyexpr`, whichever worker owns it, that takes no share
    /// of the streams (`record`).
    pub fn open_observer(args: &ZenohArgs, keyexpr: &str, net: &NetConfig) -> Result<ZenohSource> {
        let (prefix, _) = skelseg::cluster::split_frames_keyexpr(keyexpr).context(
            "a zenoh: source must look like PREFIX/frames/..., e.g. zenoh:skelseg/frames/**",
        )?;
        let observer = Worker::observe(args.session()?, prefix, args.worker_id.as_deref())?;
        let cfg = ZenohSourceConfig { net: net.clone(), ..ZenohSourceConfig::default() };
        ZenohSource::open(&observer, keyexpr, cfg)
            .with_context(|| format!("opening zenoh:{keyexpr}"))
    }
}

#[cfg(feature = "zenoh")]
pub use on::{open_observer, open_worker};
