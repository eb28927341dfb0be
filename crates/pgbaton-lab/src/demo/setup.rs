//! The demo table and the clients of both releases.

use super::*;

/// SQL that creates `schema.users (id <id_type> PRIMARY KEY, name, email, created_at)` and loads
/// `rows` rows with ids `1..=rows` (the primary key is added after the load, which is faster).
/// Shared with the benchmarks.
pub fn load_users_sql(schema: &Ident, id_type: &str, rows: u64) -> Vec<String> {
    let t = QualName::new(schema.clone(), Ident::new(TABLE));
    vec![
        format!(
            "CREATE TABLE {t} (id {id_type} NOT NULL, name text NOT NULL, email text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now())"
        ),
        format!(
            "INSERT INTO {t} (id, name, email, created_at) \
             SELECT g, 'user ' || g, 'user' || g || '@example' || (g % 7) || '.com', \
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' \
             FROM generate_series(1, {rows}) AS g"
        ),
        format!(
            "ALTER TABLE {t} ADD CONSTRAINT {} PRIMARY KEY (id)",
            Ident::new(format!("{TABLE}_pkey"))
        ),
        format!("VACUUM (ANALYZE) {t}"),
    ]
}

pub(super) async fn create_table(
    target: &Target,
    schema: &str,
    rows: u64,
    notes: &Notes,
) -> Result<(), DemoError> {
    let schema_ident = Ident::new(schema);
    notes.say(
        "setup",
        format!("creating {schema}.{TABLE} and loading {rows} rows"),
    );
    let started = Instant::now();
    target
        .admin
        .batch_execute(&format!(
            "CREATE SCHEMA {schema_ident}; COMMENT ON SCHEMA {schema_ident} IS {}",
            quote_literal(SCHEMA_MARKER)
        ))
        .await
        .map_err(db(format!("creating schema {schema}")))?;
    for sql in load_users_sql(&schema_ident, "integer", rows) {
        target
            .admin
            .batch_execute(&sql)
            .await
            .map_err(db(format!("loading {schema}.{TABLE}")))?;
    }
    // Start the measured part with a clean buffer pool; not allowed to every role, so optional.
    if let Err(e) = target.admin.batch_execute("CHECKPOINT").await {
        tracing::debug!("demo: CHECKPOINT: {}", pgbaton::pg::describe(&e));
    }
    notes.say(
        "setup",
        format!(
            "loaded {rows} rows in {:.1}s",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Replaces "any existing id" parameters by ids of `[low, high]`.
pub(super) fn restrict_ids(mut spec: ClientSpec, low: i64, high: i64) -> ClientSpec {
    for q in &mut spec.mix {
        for p in &mut q.query.params {
            if *p == ParamGen::ExistingId {
                *p = ParamGen::Int { low, high };
            }
        }
    }
    spec
}

/// The old release: the base table in `schema`, the lower half of the ids.
pub(super) fn old_clients(options: &DemoOptions, schema: &str) -> Vec<ClientSpec> {
    let half = (options.rows / 2) as i64;
    UsersTable::new(TABLE)
        .in_schema(schema)
        .clients(options.old_clients, VersionPin::Base, &options.mix)
        .into_iter()
        .enumerate()
        .map(|(i, mut spec)| {
            spec.label = format!("old-{}", i + 1);
            restrict_ids(spec, 1, half.max(1))
        })
        .collect()
}

/// The new release: `search_path` = `schema` (the version schema, or the naive copy after its
/// ALTER), the new names, the upper half of the ids; inserts from [`NEW_INSERT_BASE`].
pub(super) fn new_clients(options: &DemoOptions, schema: &str) -> Vec<ClientSpec> {
    let low = (options.rows / 2) as i64 + 1;
    let high = (options.rows as i64).max(low);
    let existing = || ParamGen::Int { low, high };
    let mix = options.mix;
    (1..=options.new_clients)
        .map(|i| {
            let mut spec = ClientSpec::new(
                format!("new-{i}"),
                VersionPin::SearchPath(schema.to_owned()),
            );
            if mix.read > 0 {
                spec = spec.with(
                    mix.read,
                    QuerySpec::read(
                        "SELECT id, full_name, email, email_domain, created_at FROM users WHERE id = $1",
                        vec![existing()],
                    ),
                );
            }
            if mix.update > 0 {
                spec = spec.with(
                    mix.update,
                    QuerySpec::update(
                        "UPDATE users SET full_name = $2, email = $3, \
                         email_domain = split_part($3::text, '@', 2) WHERE id = $1",
                        vec![existing(), ParamGen::text("n-", 12), ParamGen::email()],
                    )
                    .logged(1, Some(2)),
                );
            }
            if mix.insert > 0 {
                spec = spec.with(
                    mix.insert,
                    QuerySpec::insert(
                        "INSERT INTO users (id, full_name, email, email_domain, created_at) \
                         VALUES ($1, $2, $3, split_part($3::text, '@', 2), now())",
                        vec![ParamGen::FreshId, ParamGen::text("ni-", 12), ParamGen::email()],
                    )
                    .logged(1, Some(2)),
                );
            }
            spec
        })
        .collect()
}

pub(super) fn workload_config(
    target: &Target,
    options: &DemoOptions,
    clients: Vec<ClientSpec>,
    max_id: i64,
    phase: &str,
    seed: u64,
) -> WorkloadConfig {
    let mut config = WorkloadConfig::new(target.workload_pg.clone());
    config.clients = clients;
    config.max_id = max_id;
    config.think_time = options.think_time;
    config.initial_phase = phase.to_owned();
    config.seed = seed;
    config
}

pub(super) async fn start_workload(
    phases: &Phases,
    release: Release,
    mut config: WorkloadConfig,
) -> Result<(), DemoError> {
    config.series_origin = Some(phases.origin());
    let handle = Workload::start(config).await?;
    phases.add(release, handle);
    Ok(())
}
