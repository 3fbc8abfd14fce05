use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use confab_proxy::auth::Verifier;
use confab_proxy::config::{Cli, Command, SeedArgs, ServeArgs, SetupArgs, StoreConfig};
use confab_proxy::limits::UserLimiter;
use confab_proxy::store::{Caps, DynamoStore, SqliteStore, Store};
use confab_proxy::webhooks::WebhookVerifier;
use confab_proxy::{AppState, router};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Setup(args) => setup(args).await,
        Command::Seed(args) => seed(args).await,
    }
}

async fn open_store(config: &StoreConfig, caps: Caps) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config {
        StoreConfig::Sqlite(path) => Arc::new(
            SqliteStore::open(path)
                .with_context(|| {
                    format!("cannot open the store at {} (CONFAB_STORE)", path.display())
                })?
                .with_caps(caps),
        ),
        StoreConfig::DynamoDb { table } => {
            Arc::new(DynamoStore::from_env(table).await.with_caps(caps))
        }
    })
}

/// Sample conversations for the local stack's demo user.
async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    init_tracing("text");
    let user =
        confab_proxy::ids::UserId::parse(&args.user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
    let config = args.store_config().context("invalid configuration")?;
    let store = open_store(&config, Caps::default()).await?;
    let created = confab_proxy::seed::seed(store.as_ref(), &user)
        .await
        .context("seeding failed")?;
    if created == 0 {
        println!("{} already has conversations: nothing to do", args.user);
    } else {
        println!("seeded {created} sample conversations for {}", args.user);
    }
    Ok(())
}

/// The template's setup-dynamodb.js: create the table if it is missing.
async fn setup(args: SetupArgs) -> anyhow::Result<()> {
    init_tracing("text");
    DynamoStore::from_env(&args.table)
        .await
        .setup()
        .await
        .with_context(|| {
            format!(
                "could not set up the DynamoDB table {} (CONFAB_TABLE)",
                args.table
            )
        })?;
    println!("table {} is ready", args.table);
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(&args.log_format);
    let config = args.resolve().context("invalid configuration")?;
    let store = open_store(&config.store, config.caps).await?;
    {
        // Deleted conversations and change history older than the retention go
        // (DynamoDB does this itself with TTL; this is a no-op there).
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "purged expired history"),
                    Err(err) => tracing::warn!(error = %err, "purge failed; retrying in an hour"),
                }
            }
        });
    }
    let verifier = Verifier::new(config.auth.clone())?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;
    let mut state = AppState::new(store, verifier, config.identity, http);
    state.webhooks = config
        .webhook_secret
        .as_deref()
        .map(WebhookVerifier::new)
        .transpose()?
        .map(Arc::new);
    state.limiter = UserLimiter::new(config.rate_limit).map(Arc::new);
    state.assistant = Arc::new(match config.assistant {
        Ok(settings) => {
            tracing::info!(provider = ?settings.provider, models = settings.models.len(), "assistant replies on");
            confab_proxy::assistant::Assistant::new(settings)
        }
        Err(reason) => {
            tracing::info!(%reason, "assistant replies off");
            confab_proxy::assistant::Assistant::off(reason)
        }
    });
    let assistant = state.assistant.clone();
    if let Some(url) = &config.redis_url {
        let (hub, relay_rx) =
            confab_proxy::events::Hub::with_relay(confab_proxy::events::RELAY_QUEUE);
        state.events = hub;
        confab_proxy::relay::spawn(url, state.events.clone(), relay_rx)
            .map_err(anyhow::Error::msg)?;
        tracing::info!("change events relayed through Redis");
    }
    if let Some(limiter) = state.limiter.clone() {
        // Forget idle users' buckets so memory follows active users only.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.prune();
            }
        });
    }
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    state.shutdown = shutdown_rx;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("could not listen on {} (CONFAB_LISTEN)", config.listen))?;
    let addr = listener.local_addr()?;
    // Printed on stdout so scripts and test harnesses learn the port when given :0.
    println!("confab-proxy listening on http://{addr}");
    tracing::info!(%addr, issuer = %config.auth.issuer, "listening");
    confab_proxy::serve::serve(listener, router(state), config.serve, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = shutdown_tx.send(true);
    })
    .await;
    // Replies still running end as failed ("the server restarted"), so they
    // can be retried at once rather than waiting to look stalled.
    assistant.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Ctrl+C or SIGTERM: stop accepting, let in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
