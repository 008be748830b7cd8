//! Saves a running Docker container as a new image with the image builder (no `docker
//! commit`), printing the result as JSON. Used by `imagebuilder/bench/save_image.sh`, and handy
//! by hand:
//!
//! ```text
//! cargo run --release -p imagebuilder --example save_image -- \
//!     --container my-node --target 127.0.0.1:5000/users/alice/env:v1 --user alice
//! ```
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use imagebuilder::{
    docker_container_from_inspect, BuilderConfig, Compression, ExcludeRules, ImageBuilder,
    LayerOptions, SaveRequest, WritableLayer,
};

#[derive(Parser)]
struct Args {
    /// The running container (name or id); its writable layer comes from `docker inspect`.
    #[arg(long, conflicts_with = "upper_dir")]
    container: Option<String>,
    /// Or: an overlay upper directory to save as it is.
    #[arg(long, requires = "base")]
    upper_dir: Option<std::path::PathBuf>,
    /// The base image (default: the container's image).
    #[arg(long)]
    base: Option<String>,
    /// The new image, `registry/repository:tag`.
    #[arg(long)]
    target: String,
    /// Who saves it.
    #[arg(long, default_value = "bench")]
    user: String,
    /// gzip (single thread), pgzip (parallel gzip, the default) or zstd.
    #[arg(long, default_value = "pgzip")]
    compression: String,
    /// Compression level (gzip 1–9, zstd 1–19).
    #[arg(long)]
    level: Option<i32>,
    /// Save everything (no default exclusions, no size cap).
    #[arg(long)]
    no_excludes: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let started = Instant::now();
    let (layer, default_base) = match (&args.container, &args.upper_dir) {
        (Some(container), _) => {
            let out = Command::new("docker")
                .args(["inspect", container])
                .output()
                .context("running docker inspect")?;
            if !out.status.success() {
                bail!("docker inspect: {}", String::from_utf8_lossy(&out.stderr));
            }
            let found = docker_container_from_inspect(&String::from_utf8(out.stdout)?)?;
            (found.writable_layer(), Some(found.image))
        }
        (None, Some(dir)) => (WritableLayer::at(dir), None),
        (None, None) => bail!("give --container or --upper-dir"),
    };
    let base = args
        .base
        .or(default_base)
        .context("no base image: give --base")?;
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let compression = match args.compression.as_str() {
        "gzip" => Compression::gzip(args.level.unwrap_or(6).clamp(1, 9) as u32),
        "pgzip" => Compression::Gzip {
            level: args.level.unwrap_or(6).clamp(1, 9) as u32,
            threads,
            block_size: 1024 * 1024,
        },
        "zstd" => Compression::Zstd {
            level: args.level.unwrap_or(3),
            threads: threads as u32,
        },
        other => bail!("unknown compression {other}"),
    };
    let mut config = BuilderConfig {
        compression,
        ..BuilderConfig::default()
    };
    if args.no_excludes {
        config.layer = LayerOptions {
            excludes: ExcludeRules::none(),
            size_cap: None,
        };
    }
    let job =
        ImageBuilder::new(config).start(SaveRequest::new(layer, base, args.target, args.user))?;
    let saved = job.wait().await?;
    let mut report = serde_json::to_value(&saved)?;
    report["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
