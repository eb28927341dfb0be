//! Lock sampling: who waited for which lock, and for how long.

use super::*;

/// Who held or waited for `ACCESS EXCLUSIVE` on the table, from `pg_locks` sampled in a tight
/// loop (about one query per millisecond). A lock shorter than the sampling interval may go
/// unseen; a seen one is measured from its first to its last sample (a lower bound, short by at
/// most one interval).
#[derive(Serialize, Clone, Debug, Default)]
pub(crate) struct LockStats {
    pub(crate) samples: u64,
    pub(crate) interval_ms: f64,
    pub(crate) longest_held_ms: f64,
    pub(crate) longest_wait_ms: f64,
    /// Client sessions seen holding it.
    pub(crate) holders: u64,
    /// Every sighting: (first seen, last seen, granted), for the HTML report's lock lane.
    #[serde(skip)]
    pub(crate) sightings: Vec<(Instant, Instant, bool)>,
}

impl LockStats {
    /// The sightings as marks on a clock that starts at `origin`.
    pub(crate) fn marks(&self, origin: Instant) -> Vec<pgbaton_lab::workload::Mark> {
        let at = |t: Instant| secs(t.saturating_duration_since(origin));
        self.sightings
            .iter()
            .map(|&(first, last, granted)| pgbaton_lab::workload::Mark {
                kind: pgbaton_lab::workload::MarkKind::ExclusiveLock,
                start_s: at(first),
                end_s: at(last),
                label: format!(
                    "ACCESS EXCLUSIVE {} ({:.1}ms, sampled)",
                    if granted { "held" } else { "awaited" },
                    secs(last - first) * 1e3
                ),
            })
            .collect()
    }
}

pub(crate) struct LockSampler {
    pub(crate) stop: tokio::sync::oneshot::Sender<()>,
    pub(crate) task: tokio::task::JoinHandle<Result<LockStats>>,
}

/// pid -> (first seen, last seen).
pub(crate) type Sightings = std::collections::HashMap<i32, (Instant, Instant)>;

/// Ends the sightings of pids not in `seen`, keeping the longest.
pub(crate) fn close_sightings(
    map: &mut Sightings,
    seen: &[i32],
    longest: &mut f64,
    granted: bool,
    closed: &mut Vec<(Instant, Instant, bool)>,
) {
    map.retain(|pid, (first, last)| {
        if seen.contains(pid) {
            return true;
        }
        *longest = longest.max(secs(*last - *first) * 1e3);
        closed.push((*first, *last, granted));
        false
    });
}

impl LockSampler {
    pub(crate) async fn start(url: &str, table: &str) -> Result<LockSampler> {
        let client = connect(url).await?;
        let oid: u32 = client
            .query_one("SELECT to_regclass($1)::oid", &[&table])
            .await?
            .try_get(0)
            .with_context(|| format!("no table {table}"))?;
        let stmt = client
            .prepare(
                "SELECT l.pid, l.granted FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'relation' AND l.relation = $1 \
                   AND l.mode = 'AccessExclusiveLock' AND a.backend_type = 'client backend'",
            )
            .await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut stats = LockStats::default();
            let mut held = Sightings::new();
            let mut waiting = Sightings::new();
            let started = Instant::now();
            while matches!(
                stopped.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
            ) {
                let rows = client.query(&stmt, &[&oid]).await?;
                let now = Instant::now();
                let (mut h, mut w) = (Vec::new(), Vec::new());
                for row in rows {
                    let pid: i32 = row.get(0);
                    let granted: bool = row.get(1);
                    if granted {
                        if !held.contains_key(&pid) {
                            stats.holders += 1;
                        }
                        held.entry(pid).or_insert((now, now)).1 = now;
                        h.push(pid);
                    } else {
                        waiting.entry(pid).or_insert((now, now)).1 = now;
                        w.push(pid);
                    }
                }
                let closed = &mut stats.sightings;
                close_sightings(&mut held, &h, &mut stats.longest_held_ms, true, closed);
                close_sightings(&mut waiting, &w, &mut stats.longest_wait_ms, false, closed);
                stats.samples += 1;
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            let closed = &mut stats.sightings;
            close_sightings(&mut held, &[], &mut stats.longest_held_ms, true, closed);
            close_sightings(&mut waiting, &[], &mut stats.longest_wait_ms, false, closed);
            stats.interval_ms = secs(started.elapsed()) * 1e3 / stats.samples.max(1) as f64;
            Ok(stats)
        });
        Ok(LockSampler { stop, task })
    }

    pub(crate) async fn stop(self) -> Result<LockStats> {
        let _ = self.stop.send(());
        self.task.await.context("lock sampler task")?
    }
}

pub(crate) fn lock_cell(l: &Option<LockStats>) -> String {
    match l {
        Some(l) => format!(
            "{:.1}ms / {:.1}ms (sampled every {:.1}ms)",
            l.longest_held_ms, l.longest_wait_ms, l.interval_ms
        ),
        None => "—".into(),
    }
}
