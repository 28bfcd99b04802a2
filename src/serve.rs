//! `tinyrank serve`: the reranking HTTP server (crates/tinyrank-serve) on a tokio runtime,
//! with one JSON log line per event on stderr.

use anyhow::{Context, Result};
use tinyrank_serve::{ServeArgs, bind, serve, shutdown_signal};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn run_serve(args: ServeArgs) -> Result<()> {
    // The server's own events at info; the libraries under it (wgpu, burn) only warn.
    let filter = Targets::new()
        .with_target("tinyrank_serve", LevelFilter::INFO)
        .with_default(LevelFilter::WARN);
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .try_init()
        .context("setting up logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tinyrank-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = bind(&args).await?;
        serve(args, listener, shutdown_signal()).await
    })
}
