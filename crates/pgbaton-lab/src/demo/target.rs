//! Where the demo runs: a throwaway cluster, or the demo's own schemas of an existing database.

use super::*;

/// The database the demo uses; dropping it removes what the demo created (the throwaway cluster,
/// or the demo's schemas in an existing database).
pub(super) struct Target {
    pub(super) conn: ConnConfig,
    /// The workload's connection settings (the first host of `conn`).
    pub(super) workload_pg: tokio_postgres::Config,
    pub(super) admin: Client,
    pub(super) label: String,
    /// Drops the demo's schemas of an existing database (runs on drop).
    cleanup: Option<SchemaCleanup>,
    /// Dropped last: stops the server and removes its directory.
    pub(super) cluster: Option<Cluster>,
}

impl Target {
    pub(super) async fn open(options: &DemoOptions, notes: &Notes) -> Result<Target, DemoError> {
        match &options.database {
            DemoDatabase::Throwaway(cluster_options) => {
                notes.say("setup", "starting a throwaway PostgreSQL cluster");
                let cluster_options = cluster_options.clone();
                let cluster = tokio::task::spawn_blocking(move || Cluster::start(cluster_options))
                    .await
                    .map_err(|e| DemoError::ClusterTask(e.to_string()))??;
                cluster.create_database(DEMO_DATABASE)?;
                notes.say(
                    "setup",
                    format!(
                        "cluster up on port {} ({}); it is removed when the demo ends",
                        cluster.port(),
                        cluster.socket_dir().display()
                    ),
                );
                let conn = ConnConfig::parse(&cluster.url(DEMO_DATABASE))?;
                let mut target = Target::connect(conn, "throwaway cluster").await?;
                target.cluster = Some(cluster);
                Ok(target)
            }
            DemoDatabase::Existing(url) => {
                let conn = ConnConfig::parse(url)?;
                let mut target = Target::connect(conn, "existing database").await?;
                target.claim_schemas().await?;
                target.cleanup = Some(SchemaCleanup {
                    conn: target.conn.clone(),
                });
                Ok(target)
            }
        }
    }

    async fn connect(conn: ConnConfig, label: &str) -> Result<Target, DemoError> {
        let conn = conn.with_application_name(APP_NAME);
        let admin = pgbaton::pg::connect(&conn)
            .await
            .map_err(pgbaton::Error::from)?;
        let mut workload_pg = match conn.targets_in_connect_order().first() {
            Some(target) => conn.tokio_config(target),
            None => {
                return Err(DemoError::Pgbaton(pgbaton::Error::Other(
                    "the connection settings name no host".into(),
                )))
            }
        };
        workload_pg.application_name(WORKLOAD_APP_NAME);
        Ok(Target {
            conn,
            workload_pg,
            admin,
            label: label.to_owned(),
            cleanup: None,
            cluster: None,
        })
    }

    /// In an existing database: refuse schemas the demo did not create; drop leftovers of an
    /// earlier demo that was killed.
    async fn claim_schemas(&self) -> Result<(), DemoError> {
        let mut leftovers = false;
        for schema in demo_schemas() {
            let row = self
                .admin
                .query_opt(
                    "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = $1",
                    &[&schema.as_str()],
                )
                .await
                .map_err(db("looking for the demo's schemas"))?;
            let Some(row) = row else { continue };
            let comment: String = row.get(0);
            let ours = comment == SCHEMA_MARKER
                || (comment.contains(MIGRATION_NAME) && comment.contains(DEMO_SCHEMA));
            if !ours {
                return Err(DemoError::SchemaInUse {
                    schema: schema.as_str().to_owned(),
                });
            }
            leftovers = true;
        }
        if leftovers {
            drop_demo_schemas(&self.admin).await?;
        }
        Ok(())
    }

    pub(super) async fn server_version(&self) -> String {
        match self.admin.query_one("SELECT version()", &[]).await {
            Ok(row) => row.get(0),
            Err(e) => format!("unknown ({})", pgbaton::pg::describe(&e)),
        }
    }
}

/// Every schema the demo may create, each dropped at the end.
pub(super) fn demo_schemas() -> Vec<Ident> {
    vec![
        version_schema_name(DEMO_SCHEMA, MIGRATION_NAME),
        Ident::new(DEMO_SCHEMA),
        Ident::new(NAIVE_SCHEMA),
        Ident::new(STATE_SCHEMA),
    ]
}

pub(super) async fn drop_demo_schemas(client: &Client) -> Result<(), DemoError> {
    // Sessions of a demo that was interrupted may still hold locks on the tables.
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND application_name IN ($1, $2)",
            &[&APP_NAME, &WORKLOAD_APP_NAME],
        )
        .await
        .map_err(db("ending the demo's sessions"))?;
    for schema in demo_schemas() {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(db(format!("dropping schema {schema}")))?;
    }
    Ok(())
}

/// Drops the demo's schemas of an existing database when dropped: at the end, on an error, and
/// when the demo future is cancelled (Ctrl-C). Runs on a thread of its own with its own runtime,
/// because `Drop` cannot await.
pub(super) struct SchemaCleanup {
    pub(super) conn: ConnConfig,
}

impl Drop for SchemaCleanup {
    fn drop(&mut self) {
        let conn = self.conn.clone();
        let worker = std::thread::Builder::new()
            .name("pgbaton-demo-cleanup".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::warn!("demo cleanup: cannot start a runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match pgbaton::pg::connect(&conn).await {
                        Ok(client) => {
                            if let Err(e) = drop_demo_schemas(&client).await {
                                tracing::warn!("demo cleanup: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("demo cleanup: cannot connect: {e}"),
                    }
                });
            });
        match worker {
            Ok(handle) => {
                let _ = handle.join();
            }
            Err(e) => tracing::warn!("demo cleanup: cannot start a thread: {e}"),
        }
    }
}
