//! What the clients run: query and client specifications, the run's configuration, and the
//! ready-made `users` table workload.

use super::*;

/// What a query does, for the report and the write log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryKind {
    Read,
    Update,
    Insert,
    Delete,
}

impl QueryKind {
    pub fn is_write(self) -> bool {
        !matches!(self, QueryKind::Read)
    }
}

impl fmt::Display for QueryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueryKind::Read => "read",
            QueryKind::Update => "update",
            QueryKind::Insert => "insert",
            QueryKind::Delete => "delete",
        })
    }
}

/// One statement template: the SQL with `$1..$n`, and how each parameter is generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySpec {
    pub kind: QueryKind,
    pub sql: RawSql,
    /// `params[0]` feeds `$1`, and so on.
    pub params: Vec<ParamGen>,
    /// For the write log: which `$n` (1-based) holds the key of the row written. `None`: this
    /// write is not logged.
    pub key_param: Option<usize>,
    /// For the write log: which `$n` holds the value the write stores (inserts and updates; a
    /// logged delete has none).
    pub value_param: Option<usize>,
}

impl QuerySpec {
    pub fn new(kind: QueryKind, sql: impl Into<String>, params: Vec<ParamGen>) -> Self {
        QuerySpec {
            kind,
            sql: RawSql::new(sql),
            params,
            key_param: None,
            value_param: None,
        }
    }

    pub fn read(sql: impl Into<String>, params: Vec<ParamGen>) -> Self {
        Self::new(QueryKind::Read, sql, params)
    }

    pub fn update(sql: impl Into<String>, params: Vec<ParamGen>) -> Self {
        Self::new(QueryKind::Update, sql, params)
    }

    pub fn insert(sql: impl Into<String>, params: Vec<ParamGen>) -> Self {
        Self::new(QueryKind::Insert, sql, params)
    }

    pub fn delete(sql: impl Into<String>, params: Vec<ParamGen>) -> Self {
        Self::new(QueryKind::Delete, sql, params)
    }

    /// Log this write: `$key` is the row's key, `$value` the value stored (`None` for a delete).
    /// A write is logged when it commits and affected at least one row.
    pub fn logged(mut self, key: usize, value: Option<usize>) -> Self {
        self.key_param = Some(key);
        self.value_param = value;
        self
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        let param = |n: usize, what: &str| -> Result<&ParamGen, String> {
            n.checked_sub(1)
                .and_then(|i| self.params.get(i))
                .ok_or_else(|| {
                    format!(
                        "{} query: {what} ${n} is not one of its {} parameters",
                        self.kind,
                        self.params.len()
                    )
                })
        };
        match (self.key_param, self.value_param) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(format!(
                "{} query: a logged value needs a key parameter",
                self.kind
            )),
            (Some(key), value) => {
                if !self.kind.is_write() {
                    return Err("a read cannot be logged as a write".to_owned());
                }
                if !param(key, "key")?.is_int() {
                    return Err(format!(
                        "{} query: the key ${key} must be an integer generator",
                        self.kind
                    ));
                }
                match (self.kind, value) {
                    (QueryKind::Delete, Some(_)) => {
                        Err("a logged delete stores no value".to_owned())
                    }
                    (QueryKind::Delete, None) => Ok(()),
                    (_, None) => Err(format!(
                        "{} query: a logged write needs the parameter of its value",
                        self.kind
                    )),
                    (_, Some(v)) => param(v, "value").map(|_| ()),
                }
            }
        }
    }
}

/// How a client chooses its schema version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionPin {
    /// `SET search_path TO "<schema>", "$user", public` once per session: the version schema
    /// first (quoted as one identifier), then the server's default path, as an application does
    /// so that functions and types of the base schema still resolve. Until the version schema
    /// exists PostgreSQL skips it, and the client works on the base schema.
    SearchPath(String),
    /// `SET LOCAL pgbaton.version = '<version>'` in every transaction, as an application behind
    /// PgBouncer in transaction mode does. Each query runs in `BEGIN; SET LOCAL ...; <query>; COMMIT`.
    SetLocal(String),
    /// Nothing set: the base schema, the old version.
    Base,
}

impl VersionPin {
    /// The version name for reports and the write log (`base` for [`VersionPin::Base`]).
    pub fn label(&self) -> &str {
        match self {
            VersionPin::SearchPath(s) | VersionPin::SetLocal(s) => s,
            VersionPin::Base => "base",
        }
    }
}

/// A query and its weight in a client's mix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedQuery {
    pub weight: u32,
    pub query: QuerySpec,
}

/// One client: a connection pinned to a version, running a weighted mix of queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSpec {
    pub label: String,
    pub pin: VersionPin,
    pub mix: Vec<WeightedQuery>,
}

impl ClientSpec {
    pub fn new(label: impl Into<String>, pin: VersionPin) -> Self {
        ClientSpec {
            label: label.into(),
            pin,
            mix: Vec::new(),
        }
    }

    /// Adds a query with its weight.
    pub fn with(mut self, weight: u32, query: QuerySpec) -> Self {
        self.mix.push(WeightedQuery { weight, query });
        self
    }

    pub(super) fn validate(&self) -> Result<(), WorkloadError> {
        let invalid = |reason: String| WorkloadError::InvalidSpec {
            client: self.label.clone(),
            reason,
        };
        if self.mix.iter().map(|q| u64::from(q.weight)).sum::<u64>() == 0 {
            return Err(invalid(
                "the query mix is empty or all its weights are 0".to_owned(),
            ));
        }
        for q in &self.mix {
            q.query.validate().map_err(invalid)?;
        }
        Ok(())
    }
}

/// Everything a workload run needs. Build with [`WorkloadConfig::new`] or
/// [`WorkloadConfig::from_url`] and set the public fields.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Where to connect (each client opens one connection; no TLS).
    pub pg: tokio_postgres::Config,
    pub clients: Vec<ClientSpec>,
    /// Stop after this long ([`WorkloadHandle::wait`]); `None`: run until stopped.
    pub duration: Option<Duration>,
    /// Stop after this many queries over all clients (tests); `None`: no limit.
    pub max_queries: Option<u64>,
    /// Pause between a client's queries, jittered uniformly over ±50 %. Zero: a closed loop.
    pub think_time: Duration,
    /// Seeds the parameter generators (client `i` uses a stream derived from `seed` and `i`).
    pub seed: u64,
    /// The highest id in the table at start: [`ParamGen::ExistingId`] draws from `[1, max_id]`
    /// (growing with inserts), [`ParamGen::FreshId`] continues from it.
    pub max_id: i64,
    /// Keep the log of committed writes (one entry per write; turn off for long benchmarks).
    pub log_writes: bool,
    /// Prepare each statement once per connection, as a pooled application does (a failed
    /// statement is prepared again on its next use). `false`: parse every query anew.
    pub prepare: bool,
    /// The phase label before the first [`WorkloadHandle::mark_phase`].
    pub initial_phase: String,
    /// On stop, how long in-flight queries may take to finish before they are cancelled.
    pub stop_grace: Duration,
    /// The first pause before reconnecting after a lost connection (doubling, up to 2 s).
    pub reconnect_delay: Duration,
    /// Time zero of [`WorkloadReport::series`] and [`WorkloadReport::timeline`]: several
    /// workloads given the same origin share one time axis. `None`: when the clients start.
    pub series_origin: Option<Instant>,
    /// Width of one interval of [`WorkloadReport::series`] (zero: no series).
    pub series_interval: Duration,
}

impl WorkloadConfig {
    pub fn new(pg: tokio_postgres::Config) -> Self {
        WorkloadConfig {
            pg,
            clients: Vec::new(),
            duration: None,
            max_queries: None,
            think_time: Duration::ZERO,
            seed: 0x5eed,
            max_id: 0,
            log_writes: true,
            prepare: true,
            initial_phase: "baseline".to_owned(),
            stop_grace: Duration::from_secs(10),
            reconnect_delay: Duration::from_millis(50),
            series_origin: None,
            series_interval: DEFAULT_SERIES_INTERVAL,
        }
    }

    /// A connection string as `tokio_postgres::Config` parses it (`postgresql://...` or `key=value`).
    pub fn from_url(url: &str) -> Result<Self, WorkloadError> {
        url.parse().map(Self::new).map_err(WorkloadError::Url)
    }
}

// ---------------------------------------------------------------------------------------------
// The demo table
// ---------------------------------------------------------------------------------------------

/// The demo table `(id bigint primary key, name text, email text, created_at timestamptz)` as
/// one version sees it: the names may differ between versions (e.g. `name` renamed `full_name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsersTable {
    /// Qualify the table; `None` resolves it through the session's `search_path`.
    pub schema: Option<Ident>,
    pub table: Ident,
    pub id: Ident,
    pub name: Ident,
    pub email: Ident,
    pub created_at: Ident,
}

/// The weights of the demo mix. Default: 70 % reads, 20 % updates, 10 % inserts, no deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpMix {
    pub read: u32,
    pub update: u32,
    pub insert: u32,
    pub delete: u32,
}

impl Default for OpMix {
    fn default() -> Self {
        OpMix {
            read: 70,
            update: 20,
            insert: 10,
            delete: 0,
        }
    }
}

impl UsersTable {
    pub fn new(table: impl Into<Ident>) -> Self {
        UsersTable {
            schema: None,
            table: table.into(),
            id: Ident::new("id"),
            name: Ident::new("name"),
            email: Ident::new("email"),
            created_at: Ident::new("created_at"),
        }
    }

    pub fn in_schema(mut self, schema: impl Into<Ident>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The `name` column under another name (a renamed column in a newer version).
    pub fn with_name_column(mut self, name: impl Into<Ident>) -> Self {
        self.name = name.into();
        self
    }

    fn target(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.table),
            None => self.table.to_string(),
        }
    }

    /// `CREATE TABLE` and `INSERT` of `rows` rows with ids `1..=rows` (set
    /// [`WorkloadConfig::max_id`] to `rows`).
    pub fn create_sql(&self, rows: i64) -> String {
        let (t, id, name, email, created) = (
            self.target(),
            &self.id,
            &self.name,
            &self.email,
            &self.created_at,
        );
        format!(
            "CREATE TABLE {t} ({id} bigint PRIMARY KEY, {name} text NOT NULL, {email} text NOT NULL, \
             {created} timestamptz NOT NULL DEFAULT now());\n\
             INSERT INTO {t} ({id}, {name}, {email}) \
             SELECT g, 'user ' || g, 'user' || g || '@example.com' FROM generate_series(1, {rows}) AS g;"
        )
    }

    /// The point read, update, insert and delete, weighted by `mix` (zero weights left out).
    /// Updates and inserts are logged with the `name` value; deletes are logged.
    pub fn queries(&self, mix: &OpMix) -> Vec<WeightedQuery> {
        let (t, id, name, email, created) = (
            self.target(),
            &self.id,
            &self.name,
            &self.email,
            &self.created_at,
        );
        let all = [
            (
                mix.read,
                QuerySpec::read(format!("SELECT {id}, {name}, {email}, {created} FROM {t} WHERE {id} = $1"), vec![
                    ParamGen::ExistingId,
                ]),
            ),
            (
                mix.update,
                QuerySpec::update(format!("UPDATE {t} SET {name} = $2, {email} = $3 WHERE {id} = $1"), vec![
                    ParamGen::ExistingId,
                    ParamGen::text("u-", 12),
                    ParamGen::email(),
                ])
                .logged(1, Some(2)),
            ),
            (
                mix.insert,
                QuerySpec::insert(
                    format!("INSERT INTO {t} ({id}, {name}, {email}, {created}) VALUES ($1, $2, $3, now())"),
                    vec![ParamGen::FreshId, ParamGen::text("i-", 12), ParamGen::email()],
                )
                .logged(1, Some(2)),
            ),
            (
                mix.delete,
                QuerySpec::delete(format!("DELETE FROM {t} WHERE {id} = $1"), vec![ParamGen::ExistingId])
                    .logged(1, None),
            ),
        ];
        all.into_iter()
            .filter(|(w, _)| *w > 0)
            .map(|(weight, query)| WeightedQuery { weight, query })
            .collect()
    }

    /// `n` clients labelled `<version>-<i>`, all pinned to `pin`.
    pub fn clients(&self, n: usize, pin: VersionPin, mix: &OpMix) -> Vec<ClientSpec> {
        (1..=n)
            .map(|i| ClientSpec {
                label: format!("{}-{i}", pin.label()),
                pin: pin.clone(),
                mix: self.queries(mix),
            })
            .collect()
    }

    /// The SQL that reads the table back for [`WriteLog::verify_table`]: `(id, name)`.
    pub fn verify_sql(&self) -> String {
        format!("SELECT {}, {} FROM {}", self.id, self.name, self.target())
    }
}

/// Entry points: [`Workload::start`], [`Workload::run`], [`Workload::users_mix`].
pub struct Workload;

impl Workload {
    /// `clients` clients on the demo table `users` (default columns), pinned to `pin`, with the
    /// default mix; the table holds ids `1..=max_id`.
    pub fn users_mix(
        pg: tokio_postgres::Config,
        clients: usize,
        pin: VersionPin,
        max_id: i64,
    ) -> WorkloadConfig {
        let mut config = WorkloadConfig::new(pg);
        config.clients = UsersTable::new("users").clients(clients, pin, &OpMix::default());
        config.max_id = max_id;
        config
    }

    /// Connects every client (failing if one cannot connect or pin its version), then starts
    /// them. Must run inside a tokio runtime.
    pub async fn start(config: WorkloadConfig) -> Result<WorkloadHandle, WorkloadError> {
        WorkloadHandle::start(config).await
    }

    /// Runs to the configured duration or query limit and returns the report.
    pub async fn run(config: WorkloadConfig) -> Result<WorkloadReport, WorkloadError> {
        if config.duration.is_none() && config.max_queries.is_none() {
            return Err(WorkloadError::Unbounded);
        }
        Ok(Workload::start(config).await?.wait().await)
    }
}
