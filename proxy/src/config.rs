//! Configuration: flags with environment fallbacks. Invalid values fail at start
//! with a message naming the variable.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "confab-proxy", version, about = "Confab's backend proxy")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CONFAB_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    /// Log format: "text" for people, "json" for log collectors.
    #[arg(long, env = "CONFAB_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_defaults_to_loopback_8787() {
        let cli = Cli::try_parse_from(["confab-proxy", "serve"]).unwrap();
        let Command::Serve(args) = cli.command;
        assert_eq!(args.listen, "127.0.0.1:8787".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn invalid_listen_names_the_flag() {
        let err = Cli::try_parse_from(["confab-proxy", "serve", "--listen", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--listen"), "{err}");
    }
}
