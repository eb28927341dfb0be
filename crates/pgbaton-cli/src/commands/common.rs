//! What the commands share: the [`Context`] each one runs in (global options, event observers,
//! hooks), connecting to the database, and loading a migration file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgbaton::error::Error;
use pgbaton::executor::{Event, Observer};
use pgbaton::hooks::Hooks;
use pgbaton::ident::Ident;
use pgbaton::migrator::Migrator;

use crate::cli::Global;
use crate::output::Renderer;

/// A command's surroundings: the global options, the renderer of executor events, and the
/// observers a migrator reports to (the renderer, the metrics, the hooks).
pub struct Context {
    pub g: Global,
    pub renderer: Arc<Renderer>,
    observers: Vec<Arc<dyn Observer>>,
    hooks: Option<Arc<Hooks>>,
}

impl Context {
    /// Sets up the observers; with `--metrics-listen`, starts serving the metrics.
    pub fn new(g: Global, hooks: Option<Arc<Hooks>>) -> Result<Context, Error> {
        let renderer = Arc::new(Renderer::new(g.json, g.verbose));
        let mut observers: Vec<Arc<dyn Observer>> = vec![renderer.clone()];
        if let Some(addr) = g.metrics_listen {
            start_metrics(addr, &g)?;
            observers.push(Arc::new(pgbaton::metrics::MetricsObserver::default()));
        }
        if let Some(h) = &hooks {
            observers.push(h.clone());
        }
        Ok(Context {
            g,
            renderer,
            observers,
            hooks,
        })
    }

    /// A migrator on the database of the global options, reporting to every observer.
    pub async fn connect(&self) -> Result<Migrator, Error> {
        Ok(Migrator::connect(self.g.conn()?, self.g.settings())
            .await?
            .with_observer(Arc::new(Tee(self.observers.clone()))))
    }

    /// Runs the `--hook` commands for `event`.
    pub fn emit(&self, event: &str, fields: serde_json::Value) {
        if let Some(h) = &self.hooks {
            h.emit(event, fields);
        }
    }
}

/// Reads and parses a migration file.
pub fn load(file: &Path) -> Result<pgbaton::format::Migration, Error> {
    Ok(pgbaton::format::load(file)?)
}

/// Sends executor events to several observers, in order.
struct Tee(Vec<Arc<dyn Observer>>);

impl Observer for Tee {
    fn event(&self, event: &Event<'_>) {
        for o in &self.0 {
            o.event(event);
        }
    }
}

/// Serves the metrics on `addr`, and keeps the writes per version up to date (every 2 s, on a
/// connection of its own) while the command runs.
fn start_metrics(addr: std::net::SocketAddr, g: &Global) -> Result<(), Error> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| Error::Other(format!("--metrics-listen {addr}: {e}")))?;
    pgbaton::metrics::describe();
    let conn = g.conn()?;
    let (state, schema) = (Ident::new(g.state_schema.clone()), g.schema.clone());
    tokio::spawn(async move {
        let Ok(client) = pgbaton::pg::connect(&conn).await else {
            return;
        };
        loop {
            if let Ok(Some(active)) = pgbaton::state::active(&client, &state, &schema).await {
                let tables: Vec<_> = active
                    .plan
                    .triggers
                    .iter()
                    .map(|t| t.table.clone())
                    .collect();
                if let Ok([old, new]) = pgbaton::version_writes::read(&client, &tables).await {
                    pgbaton::metrics::record_version_writes(old, new);
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    Ok(())
}
