//! `confab-model-standin`: the stand-in model as a server, for running
//! Confab without a model key (scripts/run) and for end-to-end tests.

use std::time::Duration;

use clap::Parser;
use confab_model_standin::{ModelStandIn, Options};

#[derive(Parser)]
#[command(about = "A local stand-in for Anthropic's Messages API")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8789")]
    listen: std::net::SocketAddr,
    /// The key requests must carry.
    #[arg(
        long,
        env = "STANDIN_KEY",
        default_value = "standin-key",
        hide_env_values = true
    )]
    key: String,
    /// Milliseconds between streamed words.
    #[arg(long, default_value_t = 40)]
    word_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let standin = ModelStandIn::serve(
        listener,
        Options {
            key: args.key,
            word_delay: Duration::from_millis(args.word_delay_ms),
        },
    )?;
    // Harnesses read the URL from stdout.
    println!("confab-model-standin listening on {}", standin.url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
