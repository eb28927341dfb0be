//! The write log: every committed write, checked against the table afterwards.

use super::*;

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
    pub(super) entries: Vec<WriteEntry>,
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
