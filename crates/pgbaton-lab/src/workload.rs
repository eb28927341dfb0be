//! The client workload that proves zero downtime: N concurrent clients, each pinned to a schema
//! version, read and write while a migration runs; the report gives latency, failures (by SQLSTATE)
//! and the longest stall per phase, and the write log lets a test check that every committed write
//! survived. Shared by `pgbaton demo`, the benchmarks and the tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgbaton_lab::workload::WorkloadError> {
//! use std::time::Duration;
//! use pgbaton_lab::workload::{UsersTable, VersionPin, Workload, WorkloadConfig};
//!
//! let users = UsersTable::new("users");
//! let mut config = WorkloadConfig::from_url("host=/tmp port=5432 user=postgres dbname=app")?;
//! config.max_id = 10_000; // the rows seeded with `users.create_sql(10_000)`
//! config.clients = users.clients(4, VersionPin::Base, &Default::default());
//! let handle = Workload::start(config).await?;
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! handle.mark_phase("migration");
//! // ... run the migration ...
//! let report = handle.stop().await;
//! eprintln!("{report}");
//! # Ok(()) }
//! ```
//!
//! Memory: the latency histograms are fixed-size (one per phase); the write log holds one entry
//! per committed write, which suits tests and demos; turn it off (`log_writes = false`) for long
//! benchmarks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{CancelToken, Client, NoTls, Statement};

use pgbaton::ident::{quote_ident, quote_literal, Ident, RawSql};
use pgbaton::triggers::VERSION_SETTING;

/// The highest latency the histograms resolve (one hour); longer values are clamped to it, and
/// the exact maximum is tracked separately.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// The longest pause between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// How long an aborted client waits for its cancel request to reach the server.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// The failure class of a query still running when the stop grace period ran out.
pub const ABANDONED: &str = "abandoned";
/// The failure class of a lost connection (no SQLSTATE).
pub const CONNECTION: &str = "connection";
/// The failure class of a client-side error (e.g. a value that does not fit its parameter).
pub const CLIENT: &str = "client";

/// Why a workload could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("invalid connection string: {0}")]
    Url(#[source] tokio_postgres::Error),

    #[error("the workload has no clients")]
    NoClients,

    #[error("workload client \"{client}\": {reason}")]
    InvalidSpec { client: String, reason: String },

    #[error("workload client \"{client}\" could not connect: {}", pgbaton::pg::describe(.source))]
    Connect {
        client: String,
        source: tokio_postgres::Error,
    },

    #[error("workload client \"{client}\" could not pin its session ({sql}): {}", pgbaton::pg::describe(.source))]
    Pin {
        client: String,
        sql: String,
        source: tokio_postgres::Error,
    },

    #[error("the workload has neither a duration nor a query limit, so it would never end: use start() and stop()")]
    Unbounded,
}

// ---------------------------------------------------------------------------------------------
// Values and parameter generators
// ---------------------------------------------------------------------------------------------

/// A parameter value or a value read back. Binds to `int2`/`int4`/`int8` (range-checked),
/// `float4`/`float8` and the text types, whatever the server infers for the `$n`, so one template
/// serves both sides of an `int` → `bigint` migration. Cast in the SQL (`$1::numeric`) for others.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    /// The value as an integer key, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Text(s) => s.parse().ok(),
            Value::Null => None,
        }
    }

    /// Equal, or equal once rendered as text (an id written as `Int` and read back as `Text`).
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Text(b)) | (Value::Text(b), Value::Int(a)) => {
                a.to_string() == *b
            }
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Text(s) => f.write_str(&quote_literal(s)),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Value::Text(s) => {
                if <&str as ToSql>::accepts(ty) {
                    s.as_str().to_sql(ty, out)
                } else {
                    Err(format!(
                        "cannot bind the text {} to a parameter of type {ty}",
                        quote_literal(s)
                    )
                    .into())
                }
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8
        ) || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        match *ty {
            Type::INT2 => Ok(Value::Int(i16::from_sql(ty, raw)?.into())),
            Type::INT4 => Ok(Value::Int(i32::from_sql(ty, raw)?.into())),
            Type::INT8 => Ok(Value::Int(i64::from_sql(ty, raw)?)),
            _ => Ok(Value::Text(<&str>::from_sql(ty, raw)?.to_owned())),
        }
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8) || <&str as FromSql>::accepts(ty)
    }
}

/// How one `$n` parameter is generated for each query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamGen {
    /// A random id in `[1, high]`, `high` being the highest id that exists or was handed out:
    /// [`WorkloadConfig::max_id`] at start, raised by every [`ParamGen::FreshId`].
    ExistingId,
    /// The next id from the counter shared by all clients (`max_id + 1`, `+ 2`, ...), for inserts.
    FreshId,
    /// A random integer in `[low, high]`.
    Int { low: i64, high: i64 },
    /// `prefix`, `len` random alphanumeric characters, `suffix`.
    Text {
        prefix: String,
        len: usize,
        suffix: String,
    },
    /// Always this value.
    Const(Value),
}

impl ParamGen {
    /// `prefix` followed by `len` random alphanumeric characters.
    pub fn text(prefix: impl Into<String>, len: usize) -> Self {
        ParamGen::Text {
            prefix: prefix.into(),
            len,
            suffix: String::new(),
        }
    }

    /// A random address at example.com.
    pub fn email() -> Self {
        ParamGen::Text {
            prefix: String::new(),
            len: 10,
            suffix: "@example.com".to_owned(),
        }
    }

    fn is_int(&self) -> bool {
        match self {
            ParamGen::ExistingId | ParamGen::FreshId | ParamGen::Int { .. } => true,
            ParamGen::Const(v) => matches!(v, Value::Int(_)),
            ParamGen::Text { .. } => false,
        }
    }

    fn generate(&self, rng: &mut StdRng, ids: &AtomicI64) -> Value {
        match self {
            ParamGen::ExistingId => {
                let high = ids.load(Ordering::Relaxed).max(1);
                Value::Int(rng.random_range(1..=high))
            }
            ParamGen::FreshId => Value::Int(ids.fetch_add(1, Ordering::Relaxed).saturating_add(1)),
            ParamGen::Int { low, high } => Value::Int(rng.random_range(*low..=*high)),
            ParamGen::Text {
                prefix,
                len,
                suffix,
            } => {
                let mut s = String::with_capacity(prefix.len() + len + suffix.len());
                s.push_str(prefix);
                s.extend(
                    Alphanumeric
                        .sample_iter(&mut *rng)
                        .take(*len)
                        .map(char::from),
                );
                s.push_str(suffix);
                Value::Text(s)
            }
            ParamGen::Const(v) => v.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Specifications
// ---------------------------------------------------------------------------------------------

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

    fn validate(&self) -> Result<(), String> {
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

    fn validate(&self) -> Result<(), WorkloadError> {
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

// ---------------------------------------------------------------------------------------------
// The recorder: per-phase histograms and failures, stall tracking
// ---------------------------------------------------------------------------------------------

struct PhaseStats {
    name: Arc<str>,
    histogram: Histogram<u64>,
    max_us: u64,
    queries: u64,
    failures: u64,
    by_code: BTreeMap<String, u64>,
    longest_stall: Duration,
    longest_outage: Duration,
}

impl PhaseStats {
    fn new(name: Arc<str>) -> Self {
        PhaseStats {
            name,
            histogram: new_histogram(),
            max_us: 0,
            queries: 0,
            failures: 0,
            by_code: BTreeMap::new(),
            longest_stall: Duration::ZERO,
            longest_outage: Duration::ZERO,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: 1 µs to one hour at three significant figures (≈190 kB).
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Tracks the longest interval without an event (any completion, or a successful one).
struct GapTracker {
    last: Instant,
    last_phase: usize,
    longest: Option<GapRec>,
}

#[derive(Clone, Copy)]
struct GapRec {
    from: Instant,
    len: Duration,
    phase: usize,
    end_phase: usize,
}

impl GapTracker {
    fn new(t0: Instant) -> Self {
        GapTracker {
            last: t0,
            last_phase: 0,
            longest: None,
        }
    }
}

#[derive(Clone, Copy)]
enum GapKind {
    Stall,
    Outage,
}

struct Recorder {
    t0: Instant,
    phases: Vec<PhaseStats>,
    /// (phase index, start) for every mark, in order.
    timeline: Vec<(usize, Instant)>,
    current: usize,
    stall: GapTracker,
    outage: GapTracker,
    queries: u64,
    failures: u64,
}

impl Recorder {
    fn new(t0: Instant, initial_phase: &str) -> Self {
        Recorder {
            t0,
            phases: vec![PhaseStats::new(Arc::from(initial_phase))],
            timeline: vec![(0, t0)],
            current: 0,
            stall: GapTracker::new(t0),
            outage: GapTracker::new(t0),
            queries: 0,
            failures: 0,
        }
    }

    fn mark(&mut self, name: &str, at: Instant) {
        let index = match self.phases.iter().position(|p| &*p.name == name) {
            Some(i) => i,
            None => {
                self.phases.push(PhaseStats::new(Arc::from(name)));
                self.phases.len() - 1
            }
        };
        self.timeline.push((index, at));
        self.current = index;
    }

    /// Records one completed query; returns the phase it counts in.
    fn record(&mut self, end: Instant, latency: Duration, failure: Option<&str>) -> Arc<str> {
        self.gap(GapKind::Stall, end);
        if failure.is_none() {
            self.gap(GapKind::Outage, end);
        }
        self.tally(latency, failure)
    }

    /// Records a query still running when the run was aborted: its latency so far, as a failure
    /// of class [`ABANDONED`]; it completed nothing, so it does not end a stall.
    fn record_abandoned(&mut self, latency: Duration) {
        self.tally(latency, Some(ABANDONED));
    }

    fn tally(&mut self, latency: Duration, failure: Option<&str>) -> Arc<str> {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let phase = &mut self.phases[self.current];
        phase
            .histogram
            .saturating_record(us.clamp(1, HISTOGRAM_MAX_US));
        phase.max_us = phase.max_us.max(us);
        phase.queries += 1;
        self.queries += 1;
        if let Some(code) = failure {
            phase.failures += 1;
            self.failures += 1;
            match phase.by_code.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    phase.by_code.insert(code.to_owned(), 1);
                }
            }
        }
        phase.name.clone()
    }

    /// Closes the interval since the tracker's last event at `end`.
    fn gap(&mut self, kind: GapKind, end: Instant) {
        let current = self.current;
        let tracker = match kind {
            GapKind::Stall => &mut self.stall,
            GapKind::Outage => &mut self.outage,
        };
        if end <= tracker.last {
            return;
        }
        let (from, len) = (tracker.last, end - tracker.last);
        if tracker.longest.is_none_or(|g| len > g.len) {
            tracker.longest = Some(GapRec {
                from,
                len,
                phase: tracker.last_phase,
                end_phase: current,
            });
        }
        tracker.last = end;
        tracker.last_phase = current;
        // Per phase: the part of the gap inside each of the phase's intervals.
        let mut next_start: Option<Instant> = None;
        for &(index, start) in self.timeline.iter().rev() {
            let interval_end = next_start.unwrap_or(end);
            next_start = Some(start);
            if interval_end <= from {
                break;
            }
            let overlap = interval_end
                .min(end)
                .saturating_duration_since(start.max(from));
            let stats = &mut self.phases[index];
            let slot = match kind {
                GapKind::Stall => &mut stats.longest_stall,
                GapKind::Outage => &mut stats.longest_outage,
            };
            *slot = (*slot).max(overlap);
        }
    }

    fn report(&mut self, end: Instant, extra: ReportExtras) -> WorkloadReport {
        self.gap(GapKind::Stall, end);
        self.gap(GapKind::Outage, end);
        let mut walls = vec![Duration::ZERO; self.phases.len()];
        for (i, &(index, start)) in self.timeline.iter().enumerate() {
            let until = self.timeline.get(i + 1).map_or(end, |&(_, next)| next);
            walls[index] += until.saturating_duration_since(start);
        }
        let phases: Vec<PhaseReport> = self
            .phases
            .iter()
            .zip(&walls)
            .map(|(p, wall)| PhaseReport::from_stats(p, &p.histogram, *wall))
            .collect();

        let mut histogram = new_histogram();
        let mut total = PhaseStats::new(Arc::from("total"));
        for p in &self.phases {
            if let Err(e) = histogram.add(&p.histogram) {
                tracing::warn!("workload: merging latency histograms: {e:?}");
            }
            total.max_us = total.max_us.max(p.max_us);
            total.queries += p.queries;
            total.failures += p.failures;
            for (code, n) in &p.by_code {
                *total.by_code.entry(code.clone()).or_default() += n;
            }
        }
        let gap = |g: &Option<GapRec>| {
            g.map(|g| Gap {
                duration_ms: g.len.as_secs_f64() * 1e3,
                started_at_s: g.from.saturating_duration_since(self.t0).as_secs_f64(),
                phase: self.phases[g.phase].name.to_string(),
                ended_in: self.phases[g.end_phase].name.to_string(),
            })
        };
        let longest_stall = gap(&self.stall.longest);
        let longest_outage = gap(&self.outage.longest);
        total.longest_stall = self.stall.longest.map_or(Duration::ZERO, |g| g.len);
        total.longest_outage = self.outage.longest.map_or(Duration::ZERO, |g| g.len);
        let elapsed = end.saturating_duration_since(self.t0);
        WorkloadReport {
            elapsed_s: elapsed.as_secs_f64(),
            clients: extra.clients,
            total: PhaseReport::from_stats(&total, &histogram, elapsed),
            phases,
            longest_stall,
            longest_outage,
            reconnects: extra.reconnects,
            connect_errors: extra.connect_errors,
            abandoned: extra.abandoned,
            writes_logged: extra.writes.entries.len(),
            writes: extra.writes,
        }
    }
}

struct ReportExtras {
    clients: usize,
    reconnects: u64,
    connect_errors: u64,
    abandoned: u64,
    writes: WriteLog,
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// Latency percentiles in microseconds (p50–p99 from the histogram, three significant figures;
/// `max_us` exact).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }
}

/// One phase (or the whole run). A query counts in the phase in force when it completed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    pub name: String,
    /// Wall time spent in this phase (summed over its intervals if it was marked more than once).
    pub wall_s: f64,
    /// Queries completed, successful or not.
    pub queries: u64,
    pub failures: u64,
    /// Failures by SQLSTATE, or by class: [`CONNECTION`] (a lost connection), [`CLIENT`] (a
    /// client-side error), [`ABANDONED`] (still running when the run was aborted).
    pub failures_by_code: BTreeMap<String, u64>,
    /// Successful queries per second of wall time.
    pub throughput_qps: f64,
    /// Over all completed queries, failed ones included (a lock timeout is a latency too).
    pub latency: Latency,
    /// The longest interval within this phase during which no query completed.
    pub longest_stall_ms: f64,
    /// The longest interval within this phase during which no query succeeded.
    pub longest_outage_ms: f64,
}

impl PhaseReport {
    fn from_stats(p: &PhaseStats, histogram: &Histogram<u64>, wall: Duration) -> Self {
        let wall_s = wall.as_secs_f64();
        let ok = p.queries - p.failures;
        let quantile = |q: f64| {
            if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(q)
            }
        };
        PhaseReport {
            name: p.name.to_string(),
            wall_s,
            queries: p.queries,
            failures: p.failures,
            failures_by_code: p.by_code.clone(),
            throughput_qps: if wall_s > 0.0 {
                ok as f64 / wall_s
            } else {
                0.0
            },
            latency: Latency {
                p50_us: quantile(0.50),
                p90_us: quantile(0.90),
                p99_us: quantile(0.99),
                max_us: p.max_us,
                mean_us: if histogram.is_empty() {
                    0.0
                } else {
                    histogram.mean()
                },
            },
            longest_stall_ms: p.longest_stall.as_secs_f64() * 1e3,
            longest_outage_ms: p.longest_outage.as_secs_f64() * 1e3,
        }
    }

    /// Failures with this SQLSTATE (or `connection` / `client`).
    pub fn failures_with(&self, code: &str) -> u64 {
        self.failures_by_code.get(code).copied().unwrap_or(0)
    }

    pub fn longest_stall(&self) -> Duration {
        Duration::from_secs_f64(self.longest_stall_ms / 1e3)
    }
}

/// An interval without completions (a stall) or without successes (an outage).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    pub duration_ms: f64,
    /// When it began, in seconds since the clients started.
    pub started_at_s: f64,
    /// The phase in force when it began.
    pub phase: String,
    /// The phase in force when it ended.
    pub ended_in: String,
}

impl Gap {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_ms / 1e3)
    }
}

/// The outcome of a run. `Display` renders a compact table; `Serialize` gives JSON (without the
/// write log, which is in [`WorkloadReport::writes`]).
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadReport {
    pub elapsed_s: f64,
    pub clients: usize,
    /// In the order the phases were first marked.
    pub phases: Vec<PhaseReport>,
    pub total: PhaseReport,
    /// The longest interval during which no query completed on any client.
    pub longest_stall: Option<Gap>,
    /// The longest interval during which no query succeeded on any client.
    pub longest_outage: Option<Gap>,
    /// Connections re-established after a connection was lost.
    pub reconnects: u64,
    /// Failed reconnection attempts.
    pub connect_errors: u64,
    /// Queries still running after the stop grace period: cancelled, and counted as failures of
    /// class [`ABANDONED`] with their latency so far.
    pub abandoned: u64,
    pub writes_logged: usize,
    #[serde(skip)]
    pub writes: WriteLog,
}

impl WorkloadReport {
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

/// `812µs`, `12.3ms`, `1.02s`.
pub fn human_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

impl fmt::Display for WorkloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .phases
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        writeln!(
            f,
            "{:<width$} {:>8} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "phase", "wall", "queries", "failed", "ok/s", "p50", "p90", "p99", "max", "stall"
        )?;
        for p in self.phases.iter().chain(std::iter::once(&self.total)) {
            let l = &p.latency;
            writeln!(
                f,
                "{:<width$} {:>8} {:>9} {:>7} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8}",
                p.name,
                format!("{:.2}s", p.wall_s),
                p.queries,
                p.failures,
                p.throughput_qps,
                human_us(l.p50_us as f64),
                human_us(l.p90_us as f64),
                human_us(l.p99_us as f64),
                human_us(l.max_us as f64),
                human_us(p.longest_stall_ms * 1e3),
            )?;
        }
        for (what, gap) in [
            ("longest stall", &self.longest_stall),
            ("longest outage", &self.longest_outage),
        ] {
            if let Some(g) = gap {
                write!(
                    f,
                    "{what}: {} at {:.2}s in {}",
                    human_us(g.duration_ms * 1e3),
                    g.started_at_s,
                    g.phase
                )?;
                if g.ended_in != g.phase {
                    write!(f, " (ended in {})", g.ended_in)?;
                }
                writeln!(f)?;
            }
        }
        if !self.total.failures_by_code.is_empty() {
            let codes: Vec<String> = self
                .total
                .failures_by_code
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect();
            writeln!(f, "failures: {}", codes.join(", "))?;
        }
        write!(
            f,
            "{} clients, {} writes logged, {} reconnects, {} failed connection attempts, {} abandoned",
            self.clients, self.writes_logged, self.reconnects, self.connect_errors, self.abandoned
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The write log
// ---------------------------------------------------------------------------------------------

/// What a logged write left in the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Value(Value),
    Deleted,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Written::Value(v) => write!(f, "{v}"),
            Written::Deleted => f.write_str("(deleted)"),
        }
    }
}

/// One logged write. Times are since the clients started.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteEntry {
    pub client: Arc<str>,
    pub version: Arc<str>,
    pub phase: Arc<str>,
    pub kind: QueryKind,
    pub key: i64,
    pub written: Written,
    /// When the statement (or its transaction) was sent.
    pub sent_at: Duration,
    /// When the commit was acknowledged (or, in doubt, when the connection failed).
    pub committed_at: Duration,
    /// The connection failed before the commit was acknowledged: the write may or may not have
    /// committed.
    pub in_doubt: bool,
}

/// The committed writes of a run (plus the in-doubt ones), ordered by commit acknowledgement.
/// One entry per write: bounded by the number of writes, not fixed-size.
#[derive(Clone, Debug, Default)]
pub struct WriteLog {
    entries: Vec<WriteEntry>,
}

/// What the table may hold for a key after the run.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    /// The writes that may have committed last: the latest acknowledged, and every write whose
    /// flight overlapped it (their commit order is not observable from the client). Usually one.
    pub candidates: Vec<&'a WriteEntry>,
    /// No write to this key surely committed, so the row may also be as it was before the run.
    pub prior_possible: bool,
}

impl<'a> Expected<'a> {
    /// The candidate acknowledged last.
    pub fn last(&self) -> Option<&'a WriteEntry> {
        self.candidates
            .iter()
            .copied()
            .max_by_key(|e| e.committed_at)
    }

    /// Whether `actual` (the row's value, `None` when the row is absent) fits.
    pub fn accepts(&self, actual: Option<&Value>) -> bool {
        self.prior_possible
            || self.candidates.iter().any(|c| match (&c.written, actual) {
                (Written::Deleted, None) => true,
                (Written::Value(v), Some(a)) => v.same_as(a),
                _ => false,
            })
    }
}

/// A key whose row does not hold what the log says was written last.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub key: i64,
    /// `None`: the row is absent.
    pub actual: Option<Value>,
    /// The values any of which would have been right.
    pub expected: Vec<Written>,
    /// The last acknowledged write: client, version, phase, seconds since start.
    pub last_write: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actual = self
            .actual
            .as_ref()
            .map_or_else(|| "no row".to_owned(), |v| v.to_string());
        let expected: Vec<String> = self.expected.iter().map(|w| w.to_string()).collect();
        write!(
            f,
            "key {}: the table has {actual}, expected {} ({})",
            self.key,
            expected.join(" or "),
            self.last_write
        )
    }
}

impl WriteLog {
    pub fn entries(&self) -> &[WriteEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Per key, what the table may hold now: the last committed write (see [`Expected`]).
    pub fn last_value_per_key(&self) -> BTreeMap<i64, Expected<'_>> {
        let mut by_key: BTreeMap<i64, Vec<&WriteEntry>> = BTreeMap::new();
        for e in &self.entries {
            by_key.entry(e.key).or_default().push(e);
        }
        by_key
            .into_iter()
            .map(|(key, writes)| {
                // The write that surely committed last was sent no earlier than `latest_sent`; any
                // write acknowledged after that instant may have committed after it.
                let latest_sent = writes
                    .iter()
                    .filter(|e| !e.in_doubt)
                    .map(|e| e.sent_at)
                    .max();
                let expected = match latest_sent {
                    Some(s) => Expected {
                        candidates: writes
                            .iter()
                            .copied()
                            .filter(|e| e.committed_at >= s)
                            .collect(),
                        prior_possible: false,
                    },
                    None => Expected {
                        candidates: writes,
                        prior_possible: true,
                    },
                };
                (key, expected)
            })
            .collect()
    }

    /// Compares the log with the table's rows (`key -> value`); returns the keys that differ.
    /// Keys the log never wrote are not checked.
    pub fn verify(&self, rows: &BTreeMap<i64, Value>) -> Vec<Mismatch> {
        self.last_value_per_key()
            .into_iter()
            .filter_map(|(key, expected)| {
                let actual = rows.get(&key);
                if expected.accepts(actual) {
                    return None;
                }
                let last_write = expected.last().map_or_else(String::new, |e| {
                    format!(
                        "last written by {} (version {}) in {} at {:.3}s",
                        e.client,
                        e.version,
                        e.phase,
                        e.committed_at.as_secs_f64()
                    )
                });
                Some(Mismatch {
                    key,
                    actual: actual.cloned(),
                    expected: expected
                        .candidates
                        .iter()
                        .map(|c| c.written.clone())
                        .collect(),
                    last_write,
                })
            })
            .collect()
    }

    /// Reads `(key, value)` rows with `sql` (e.g. [`UsersTable::verify_sql`]) and verifies them.
    pub async fn verify_table(
        &self,
        client: &Client,
        sql: &str,
    ) -> Result<Vec<Mismatch>, tokio_postgres::Error> {
        let mut rows = BTreeMap::new();
        for row in client.query(sql, &[]).await? {
            let key: Value = row.try_get(0)?;
            let value: Value = row.try_get(1)?;
            if let Some(k) = key.as_int() {
                rows.insert(k, value);
            }
        }
        Ok(self.verify(&rows))
    }
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Running,
    Stopping,
    Abort,
}

struct Shared {
    pg: tokio_postgres::Config,
    t0: Instant,
    recorder: Mutex<Recorder>,
    ids: AtomicI64,
    issued: AtomicU64,
    max_queries: Option<u64>,
    think_time: Duration,
    prepare: bool,
    log_writes: bool,
    reconnect_delay: Duration,
    reconnects: AtomicU64,
    connect_errors: AtomicU64,
    abandoned: AtomicU64,
}

impl Shared {
    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A live snapshot, for progress display.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    pub elapsed_s: f64,
    pub phase: String,
    pub queries: u64,
    pub failures: u64,
}

/// A running workload. Dropping it without [`WorkloadHandle::stop`] aborts the clients.
pub struct WorkloadHandle {
    shared: Arc<Shared>,
    state: watch::Sender<RunState>,
    tasks: Vec<JoinHandle<Vec<WriteEntry>>>,
    done: mpsc::Receiver<()>,
    deadline: Option<tokio::time::Instant>,
    stop_grace: Duration,
    clients: usize,
}

struct Conn {
    client: Client,
    cancel: CancelToken,
    statements: Vec<Option<Statement>>,
}

async fn connect(pg: &tokio_postgres::Config, spec: &ClientSpec) -> Result<Conn, WorkloadError> {
    let mut pg = pg.clone();
    if pg.get_application_name().is_none() {
        pg.application_name(format!("pgbaton-workload {}", spec.label));
    }
    let (client, connection) =
        pg.connect(NoTls)
            .await
            .map_err(|source| WorkloadError::Connect {
                client: spec.label.clone(),
                source,
            })?;
    let label = spec.label.clone();
    tokio::spawn(async move {
        // The client sees the same failure on its next request and reconnects.
        if let Err(e) = connection.await {
            tracing::debug!("workload client {label}: connection ended: {e}");
        }
    });
    if let VersionPin::SearchPath(schema) = &spec.pin {
        let sql = format!(
            "SET search_path TO {}, \"$user\", public",
            quote_ident(schema)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|source| WorkloadError::Pin {
                client: spec.label.clone(),
                sql,
                source,
            })?;
    }
    Ok(Conn {
        cancel: client.cancel_token(),
        client,
        statements: vec![None; spec.mix.len()],
    })
}

impl WorkloadHandle {
    async fn start(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        if config.clients.is_empty() {
            return Err(WorkloadError::NoClients);
        }
        for spec in &config.clients {
            spec.validate()?;
        }
        let conns = futures_util::future::try_join_all(
            config.clients.iter().map(|spec| connect(&config.pg, spec)),
        )
        .await?;

        // The clock starts when every client is connected.
        let t0 = Instant::now();
        let shared = Shared {
            pg: config.pg,
            t0,
            recorder: Mutex::new(Recorder::new(t0, &config.initial_phase)),
            ids: AtomicI64::new(config.max_id),
            issued: AtomicU64::new(0),
            max_queries: config.max_queries,
            think_time: config.think_time,
            prepare: config.prepare,
            log_writes: config.log_writes,
            reconnect_delay: config.reconnect_delay,
            reconnects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        };
        let shared = Arc::new(shared);
        let (state, state_rx) = watch::channel(RunState::Running);
        let (done_tx, done) = mpsc::channel(1);
        let clients = config.clients.len();
        let tasks: Vec<_> = config
            .clients
            .into_iter()
            .zip(conns)
            .enumerate()
            .map(|(index, (spec, conn))| {
                let client = ClientTask::new(index, spec, shared.clone(), config.seed);
                tokio::spawn(client.run(conn, state_rx.clone(), done_tx.clone()))
            })
            .collect();
        Ok(WorkloadHandle {
            shared,
            state,
            tasks,
            done,
            deadline: config
                .duration
                .map(|d| tokio::time::Instant::from_std(t0 + d)),
            stop_grace: config.stop_grace,
            clients,
        })
    }

    /// Later completions count in phase `name` (phases marked twice accumulate).
    pub fn mark_phase(&self, name: impl AsRef<str>) {
        self.shared.recorder().mark(name.as_ref(), Instant::now());
    }

    pub fn progress(&self) -> Progress {
        let r = self.shared.recorder();
        Progress {
            elapsed_s: self.shared.t0.elapsed().as_secs_f64(),
            phase: r.phases[r.current].name.to_string(),
            queries: r.queries,
            failures: r.failures,
        }
    }

    /// Waits for the configured duration or query limit (without either, until every client
    /// has ended, which never happens: use [`WorkloadHandle::stop`]), then stops.
    pub async fn wait(mut self) -> WorkloadReport {
        match self.deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = wait_all(&mut self.done) => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => wait_all(&mut self.done).await,
        }
        self.finish().await
    }

    /// Stops the clients: no new queries; in-flight ones get [`WorkloadConfig::stop_grace`] to
    /// finish, then are cancelled and counted as failures of class [`ABANDONED`].
    pub async fn stop(self) -> WorkloadReport {
        self.finish().await
    }

    async fn finish(mut self) -> WorkloadReport {
        self.state.send_replace(RunState::Stopping);
        if tokio::time::timeout(self.stop_grace, wait_all(&mut self.done))
            .await
            .is_err()
        {
            self.state.send_replace(RunState::Abort);
        }
        let mut entries = Vec::new();
        for task in std::mem::take(&mut self.tasks) {
            match task.await {
                Ok(writes) => entries.extend(writes),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => tracing::warn!("workload client task ended abnormally: {e}"),
            }
        }
        let end = Instant::now();
        entries.sort_by_key(|e| e.committed_at);
        let extras = ReportExtras {
            clients: self.clients,
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
            connect_errors: self.shared.connect_errors.load(Ordering::Relaxed),
            abandoned: self.shared.abandoned.load(Ordering::Relaxed),
            writes: WriteLog { entries },
        };
        self.shared.recorder().report(end, extras)
    }
}

impl Drop for WorkloadHandle {
    fn drop(&mut self) {
        self.state.send_replace(RunState::Abort);
    }
}

/// Until the run state satisfies `f` (or the handle is gone). The guard `wait_for` returns is
/// dropped here, so it never lives across an await.
async fn until(state: &mut watch::Receiver<RunState>, f: impl Fn(RunState) -> bool) {
    // An error means the handle is gone, which ends the wait too.
    let _ = state.wait_for(|s| f(*s)).await.map(drop);
}

/// Until every client task has dropped its `done` sender.
async fn wait_all(done: &mut mpsc::Receiver<()>) {
    while done.recv().await.is_some() {}
}

struct ClientTask {
    spec: ClientSpec,
    label: Arc<str>,
    version: Arc<str>,
    /// Cumulative weights, for picking a query.
    cumulative: Vec<u64>,
    /// `BEGIN; SET LOCAL ...` for [`VersionPin::SetLocal`] (the pin never changes).
    begin: Option<String>,
    shared: Arc<Shared>,
    rng: StdRng,
}

/// A failed query: the error, and whether its write may nonetheless have committed.
struct OpFailure {
    error: tokio_postgres::Error,
    in_doubt: bool,
}

fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// The failure class: the SQLSTATE, else `connection` or `client`.
fn classify(e: &tokio_postgres::Error, client: &Client) -> String {
    match e.code() {
        Some(code) => code.code().to_owned(),
        None if client.is_closed() || is_connection_error(e) => CONNECTION.to_owned(),
        None => CLIENT.to_owned(),
    }
}

/// Whether the session is gone: closed, or ended by the server (class 08, 57P01..57P03).
fn session_lost(e: &tokio_postgres::Error, client: &Client) -> bool {
    client.is_closed()
        || is_connection_error(e)
        || e.code().is_some_and(|c| {
            c.code().starts_with("08") || matches!(c.code(), "57P01" | "57P02" | "57P03")
        })
}

impl ClientTask {
    fn new(index: usize, spec: ClientSpec, shared: Arc<Shared>, seed: u64) -> Self {
        let mut total = 0u64;
        let cumulative = spec
            .mix
            .iter()
            .map(|q| {
                total += u64::from(q.weight);
                total
            })
            .collect();
        let stream = (index as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let begin = match &spec.pin {
            VersionPin::SetLocal(version) => Some(format!(
                "BEGIN; SET LOCAL {VERSION_SETTING} = {}",
                quote_literal(version)
            )),
            VersionPin::SearchPath(_) | VersionPin::Base => None,
        };
        ClientTask {
            label: Arc::from(spec.label.as_str()),
            version: Arc::from(spec.pin.label()),
            cumulative,
            begin,
            rng: StdRng::seed_from_u64(seed ^ stream),
            spec,
            shared,
        }
    }

    fn pick(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let r = self.rng.random_range(0..total.max(1));
        self.cumulative
            .partition_point(|&c| c <= r)
            .min(self.cumulative.len().saturating_sub(1))
    }

    async fn run(
        mut self,
        conn: Conn,
        mut state: watch::Receiver<RunState>,
        _done: mpsc::Sender<()>,
    ) -> Vec<WriteEntry> {
        let mut writes = Vec::new();
        let mut conn = Some(conn);
        loop {
            if *state.borrow() != RunState::Running {
                break;
            }
            let Some(c) = conn.as_mut() else {
                conn = self.reconnect(&mut state).await;
                if conn.is_none() {
                    break;
                }
                continue;
            };
            if let Some(max) = self.shared.max_queries {
                if self.shared.issued.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
            }
            let qi = self.pick();
            let query = &self.spec.mix[qi].query;
            let params: Vec<Value> = query
                .params
                .iter()
                .map(|g| g.generate(&mut self.rng, &self.shared.ids))
                .collect();
            let sent = Instant::now();
            let outcome = tokio::select! {
                r = execute(c, qi, query, &params, self.begin.as_deref(), self.shared.prepare) => r,
                _ = until(&mut state, |s| s == RunState::Abort) => {
                    self.abandon(&c.cancel, sent).await;
                    break;
                }
            };
            let end = Instant::now();
            let (phase, logged) = match &outcome {
                Ok(rows) => (
                    self.shared.recorder().record(end, end - sent, None),
                    *rows > 0,
                ),
                Err(f) => {
                    let code = classify(&f.error, &c.client);
                    if f.error.code().is_none() {
                        tracing::debug!("workload client {}: {}", self.label, f.error);
                    }
                    (
                        self.shared.recorder().record(end, end - sent, Some(&code)),
                        f.in_doubt,
                    )
                }
            };
            if logged && self.shared.log_writes {
                if let Some(entry) =
                    self.log_entry(query, &params, phase, sent, end, outcome.is_err())
                {
                    writes.push(entry);
                }
            }
            if let Err(f) = &outcome {
                if session_lost(&f.error, &c.client) {
                    conn = None;
                    continue;
                }
            }
            self.think(&mut state).await;
        }
        writes
    }

    /// The run was aborted while a query was in flight: cancel it on the server (so it stops
    /// waiting for a lock, say) and count it.
    async fn abandon(&self, cancel: &CancelToken, sent: Instant) {
        let latency = sent.elapsed();
        match tokio::time::timeout(CANCEL_TIMEOUT, cancel.cancel_query(NoTls)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("workload client {}: cancel: {e}", self.label),
            Err(_) => tracing::debug!("workload client {}: cancel timed out", self.label),
        }
        self.shared.abandoned.fetch_add(1, Ordering::Relaxed);
        self.shared.recorder().record_abandoned(latency);
    }

    fn log_entry(
        &self,
        query: &QuerySpec,
        params: &[Value],
        phase: Arc<str>,
        sent: Instant,
        end: Instant,
        in_doubt: bool,
    ) -> Option<WriteEntry> {
        let key = params.get(query.key_param?.checked_sub(1)?)?.as_int()?;
        let written = match query.value_param {
            Some(v) => Written::Value(params.get(v.checked_sub(1)?)?.clone()),
            None => Written::Deleted,
        };
        Some(WriteEntry {
            client: self.label.clone(),
            version: self.version.clone(),
            phase,
            kind: query.kind,
            key,
            written,
            sent_at: sent.saturating_duration_since(self.shared.t0),
            committed_at: end.saturating_duration_since(self.shared.t0),
            in_doubt,
        })
    }

    async fn think(&mut self, state: &mut watch::Receiver<RunState>) {
        let think = self.shared.think_time;
        if think.is_zero() {
            return;
        }
        let pause = think.mul_f64(self.rng.random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = until(state, |s| s != RunState::Running) => {}
        }
    }

    async fn reconnect(&mut self, state: &mut watch::Receiver<RunState>) -> Option<Conn> {
        let mut delay = self.shared.reconnect_delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = until(state, |s| s != RunState::Running) => return None,
            }
            match connect(&self.shared.pg, &self.spec).await {
                Ok(conn) => {
                    self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    return Some(conn);
                }
                Err(e) => {
                    tracing::debug!("{e}");
                    self.shared.connect_errors.fetch_add(1, Ordering::Relaxed);
                    delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                }
            }
        }
    }
}

/// Runs one query, in a transaction opened by `begin` (the `SET LOCAL` of
/// [`VersionPin::SetLocal`]) when given; returns the rows affected (or returned).
async fn execute(
    conn: &mut Conn,
    qi: usize,
    query: &QuerySpec,
    params: &[Value],
    begin: Option<&str>,
    prepare: bool,
) -> Result<u64, OpFailure> {
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let definite = |error| OpFailure {
        error,
        in_doubt: false,
    };
    let statement = if prepare {
        match &conn.statements[qi] {
            Some(s) => Some(s.clone()),
            None => {
                let s = conn
                    .client
                    .prepare(query.sql.as_str())
                    .await
                    .map_err(definite)?;
                conn.statements[qi] = Some(s.clone());
                Some(s)
            }
        }
    } else {
        None
    };
    let result = match begin {
        Some(begin) => {
            let body = async {
                conn.client.batch_execute(begin).await?;
                run_statement(&conn.client, statement.as_ref(), query, &refs).await
            };
            match body.await {
                Ok(rows) => conn
                    .client
                    .batch_execute("COMMIT")
                    .await
                    .map(|()| rows)
                    .map_err(maybe_in_doubt),
                Err(error) => {
                    if !conn.client.is_closed() {
                        if let Err(e) = conn.client.batch_execute("ROLLBACK").await {
                            tracing::debug!("workload: rollback after a failed query: {e}");
                        }
                    }
                    Err(definite(error))
                }
            }
        }
        None => run_statement(&conn.client, statement.as_ref(), query, &refs)
            .await
            .map_err(maybe_in_doubt),
    };
    if result.is_err() {
        // The statement may be what failed (a dropped or changed relation): prepare it afresh.
        conn.statements[qi] = None;
    }
    result
}

/// Executes the query: its prepared statement when there is one, its SQL text otherwise.
async fn run_statement(
    client: &Client,
    statement: Option<&Statement>,
    query: &QuerySpec,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    match statement {
        Some(s) => client.execute(s, params).await,
        None => client.execute(query.sql.as_str(), params).await,
    }
}

/// A failure of the statement that would commit: a connection lost without a server error
/// leaves it unknown whether the write committed.
fn maybe_in_doubt(error: tokio_postgres::Error) -> OpFailure {
    let in_doubt = error.code().is_none() && is_connection_error(&error);
    OpFailure { error, in_doubt }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        key: i64,
        value: Option<&str>,
        sent_ms: u64,
        acked_ms: u64,
        in_doubt: bool,
    ) -> WriteEntry {
        WriteEntry {
            client: Arc::from("c"),
            version: Arc::from("v"),
            phase: Arc::from("p"),
            kind: if value.is_some() {
                QueryKind::Update
            } else {
                QueryKind::Delete
            },
            key,
            written: value.map_or(Written::Deleted, |v| Written::Value(Value::from(v))),
            sent_at: Duration::from_millis(sent_ms),
            committed_at: Duration::from_millis(acked_ms),
            in_doubt,
        }
    }

    #[test]
    fn last_value_is_the_last_acknowledged_unless_flights_overlap() {
        let log = WriteLog {
            entries: vec![
                entry(1, Some("a"), 0, 1, false),
                entry(1, Some("b"), 2, 3, false),
                // Two overlapping flights on key 2: either may have committed last.
                entry(2, Some("x"), 0, 5, false),
                entry(2, Some("y"), 4, 6, false),
                // Key 3: deleted last.
                entry(3, Some("z"), 0, 1, false),
                entry(3, None, 2, 3, false),
                // Key 4: only an in-doubt write: anything goes.
                entry(4, Some("q"), 0, 1, true),
                // Key 5: a committed write, then an in-doubt one sent after it.
                entry(5, Some("m"), 0, 1, false),
                entry(5, Some("n"), 2, 3, true),
            ],
        };
        let expected = log.last_value_per_key();
        let text = |s: &str| Value::from(s);
        assert!(expected[&1].accepts(Some(&text("b"))));
        assert!(!expected[&1].accepts(Some(&text("a"))));
        assert!(!expected[&1].accepts(None));
        assert_eq!(
            expected[&1].last().map(|e| e.written.clone()),
            Some(Written::Value(text("b")))
        );
        assert!(expected[&2].accepts(Some(&text("x"))) && expected[&2].accepts(Some(&text("y"))));
        assert!(!expected[&2].accepts(Some(&text("w"))));
        assert!(expected[&3].accepts(None) && !expected[&3].accepts(Some(&text("z"))));
        assert!(expected[&4].prior_possible && expected[&4].accepts(Some(&text("anything"))));
        assert!(expected[&5].accepts(Some(&text("m"))) && expected[&5].accepts(Some(&text("n"))));
        assert!(!expected[&5].accepts(None));

        let rows: BTreeMap<i64, Value> = [(1, text("a")), (2, text("y")), (5, text("n"))]
            .into_iter()
            .collect();
        let mismatches = log.verify(&rows);
        assert_eq!(
            mismatches.iter().map(|m| m.key).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(mismatches[0].actual, Some(text("a")));
        assert!(mismatches[0]
            .to_string()
            .starts_with("key 1: the table has 'a', expected 'b'"));
    }

    #[test]
    fn gaps_are_split_across_phases() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Recorder::new(t0, "before");
        r.record(ms(10), Duration::from_millis(1), None);
        r.mark("lock", ms(20));
        r.mark("after", ms(500));
        r.record(ms(900), Duration::from_millis(880), None);
        r.record(ms(910), Duration::from_millis(2), Some("42P01"));
        let report = r.report(
            ms(1000),
            ReportExtras {
                clients: 1,
                reconnects: 0,
                connect_errors: 0,
                abandoned: 0,
                writes: WriteLog::default(),
            },
        );
        let stall = report.longest_stall.clone().expect("a stall");
        assert_eq!(stall.duration_ms, 890.0);
        assert_eq!(
            (stall.phase.as_str(), stall.ended_in.as_str()),
            ("before", "after")
        );
        assert_eq!(
            report.phase("before").map(|p| p.longest_stall_ms),
            Some(10.0)
        );
        assert_eq!(
            report.phase("lock").map(|p| p.longest_stall_ms),
            Some(480.0)
        );
        assert_eq!(
            report.phase("after").map(|p| p.longest_stall_ms),
            Some(400.0)
        );
        assert_eq!(report.phase("lock").map(|p| p.queries), Some(0));
        let after = report.phase("after").expect("phase after");
        assert_eq!(
            (after.queries, after.failures, after.failures_with("42P01")),
            (2, 1, 1)
        );
        assert!((after.wall_s - 0.5).abs() < 1e-9);
        assert_eq!(after.latency.max_us, 880_000);
        // The outage runs from the last success (900 ms) to the end: 100 ms, in "after".
        assert_eq!(
            report.longest_outage.as_ref().map(|g| g.duration_ms),
            Some(890.0)
        );
        assert_eq!(report.total.queries, 3);
        let shown = report.to_string();
        assert!(
            shown.contains("longest stall: 890.0ms at 0.01s in before (ended in after)"),
            "{shown}"
        );
        assert!(shown.contains("failures: 42P01 ×1"), "{shown}");
        let json: serde_json::Value =
            serde_json::from_str(&report.to_json().expect("json")).expect("valid json");
        assert_eq!(json["total"]["failures_by_code"]["42P01"], 1);
    }

    #[test]
    fn specs_are_validated() {
        let bad = ClientSpec::new("c", VersionPin::Base).with(
            1,
            QuerySpec::update(
                "UPDATE t SET v = $2 WHERE id = $1",
                vec![ParamGen::ExistingId],
            )
            .logged(1, Some(2)),
        );
        assert!(matches!(
            bad.validate(),
            Err(WorkloadError::InvalidSpec { .. })
        ));
        let text_key = ClientSpec::new("c", VersionPin::Base).with(
            1,
            QuerySpec::delete("DELETE FROM t WHERE id = $1", vec![ParamGen::text("", 3)])
                .logged(1, None),
        );
        assert!(text_key.validate().is_err());
        assert!(ClientSpec::new("c", VersionPin::Base).validate().is_err());
        let users = UsersTable::new("users");
        for spec in users.clients(
            2,
            VersionPin::SetLocal("v2".into()),
            &OpMix {
                delete: 5,
                ..OpMix::default()
            },
        ) {
            spec.validate().expect("the demo mix is valid");
            assert_eq!(spec.mix.len(), 4);
        }
    }

    #[test]
    fn generators_draw_from_the_shared_id_space() {
        let ids = AtomicI64::new(10);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let Value::Int(v) = ParamGen::ExistingId.generate(&mut rng, &ids) else {
                panic!("an int")
            };
            assert!((1..=10).contains(&v));
        }
        assert_eq!(ParamGen::FreshId.generate(&mut rng, &ids), Value::Int(11));
        assert_eq!(ParamGen::FreshId.generate(&mut rng, &ids), Value::Int(12));
        let Value::Text(email) = ParamGen::email().generate(&mut rng, &ids) else {
            panic!("text")
        };
        assert!(email.ends_with("@example.com") && email.len() == 22);
    }

    #[test]
    fn demo_sql_quotes_names() {
        let users = UsersTable::new("Users")
            .in_schema("app")
            .with_name_column("full name");
        let q = users.queries(&OpMix {
            read: 1,
            update: 0,
            insert: 0,
            delete: 0,
        });
        assert_eq!(
            q[0].query.sql.as_str(),
            "SELECT \"id\", \"full name\", \"email\", \"created_at\" FROM \"app\".\"Users\" WHERE \"id\" = $1"
        );
    }
}
