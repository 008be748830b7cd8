//! `xiji-proxy`: Xiji's proxy on its own, driven through configurable-http-proxy's REST API.
//! A drop-in for `configurable-http-proxy` (JupyterHub's `ConfigurableHTTPProxy` with
//! `should_start = False`) and for Xiji's hub with `[proxy] mode = "external"`.

use clap::Parser;

/// Xiji's HTTP/websocket proxy with configurable-http-proxy's REST API.
#[derive(Debug, Parser)]
#[command(name = "xiji-proxy", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: proxy::StandaloneArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    proxy::init_logging(&cli.args.log_level);
    match proxy::run_standalone(cli.args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xiji-proxy: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
