//! The writer: one thread owns the write session and turns queued requests into transactions.
//!
//! Callers hand it a job (a closure over the write session) and wait for their answer. With group
//! commit the writer takes everything queued, runs each job inside its own savepoint, commits the
//! whole batch with one fsync and only then answers every caller. A job that fails or loses its
//! compare-and-set rolls back its savepoint alone. With per-commit durability each job gets its
//! own transaction (the baseline the benchmark compares against).
//!
//! Under load the writer lingers a little before a transaction (see [`Linger`]): callers
//! answered by one commit come back with their next request while the next commit would
//! already be flushing, and without the wait they alternate in two half-size groups, each
//! waiting for the other's flush. A writer that was idle, or whose last transaction held a
//! single request, never waits.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::StoreError;
use crate::backend::WriteTx;
use crate::types::Durability;

/// Called once the batch's fate is known: `Ok` if it committed.
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// How a job ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Its changes stand.
    Done,
    /// It refused before writing anything (a lost compare-and-set).
    Refused,
    /// It failed and may have written something.
    Failed,
}

/// The body of a job.
type Body = Box<dyn FnOnce(&mut dyn WriteTx) -> (Status, Deliver) + Send>;

/// A request: runs inside the transaction, says how it ended and how to answer.
struct Job {
    /// Run inside its own savepoint. Jobs that write nothing before their compare-and-set and
    /// whose later statements can only fail with a database error skip it: the savepoint costs
    /// a copy of every page the job touches. If such a job fails after writing, the whole batch
    /// is rolled back and every caller told so.
    savepoint: bool,
    run: Body,
    /// Answer the caller without running (the transaction failed before this job's turn).
    abort: Box<dyn FnOnce(StoreError) + Send>,
}

/// Most jobs in one transaction.
const MAX_BATCH: usize = 8192;
/// Histogram bucket bounds for batch sizes.
pub(crate) const BUCKETS: [u64; 14] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
];

/// Histogram bucket bounds for the time a durable commit takes, in microseconds.
pub(crate) const COMMIT_BUCKETS_US: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

#[derive(Default)]
pub(crate) struct WriterStats {
    pub(crate) jobs: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) sizes: [AtomicU64; 15],
    /// Time spent in `commit` (writing and syncing), per transaction, by bucket.
    pub(crate) commit_times: [AtomicU64; 12],
    pub(crate) commit_micros: AtomicU64,
    /// Time spent running the requests of each transaction (their statements), in total.
    pub(crate) run_micros: AtomicU64,
    /// Time spent waiting for more requests before transactions (see [`Linger`]), in total.
    pub(crate) linger_micros: AtomicU64,
}

/// Count `value` in the first bucket whose bound holds it (`counts` has one more bucket than
/// `bounds`, for everything above the last bound).
fn count_into(bounds: &[u64], counts: &[AtomicU64], value: u64) {
    let bucket = bounds
        .iter()
        .position(|&b| value <= b)
        .unwrap_or(bounds.len());
    if let Some(c) = counts.get(bucket) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Longest a transaction waits for more requests after its first (see [`Linger`]).
pub(crate) const MAX_LINGER: Duration = Duration::from_millis(2);
/// A linger ends when no request has come for this long.
pub(crate) const LINGER_GAP: Duration = Duration::from_micros(250);

/// How long the next transaction may wait for more requests, decided from the last one.
///
/// The requests in flight are about those of the last transaction plus those that were already
/// queued when it finished. When fewer than that are queued, the writer waits for the rest, at
/// most half the last commit's duration (never more than [`MAX_LINGER`]) and never longer than
/// [`LINGER_GAP`] without a new one. A last transaction of one request (an idle writer, or one
/// caller at a time) means no wait at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Linger {
    /// Stop waiting once this many requests are in the batch.
    pub(crate) expected: usize,
    /// Longest wait, from the first request.
    pub(crate) budget: Duration,
}

impl Linger {
    /// The wait before a transaction: `last_size` requests in the last one, which took
    /// `last_commit` to commit, and `waiting` requests queued when it finished; `None` when
    /// the transaction starts at once.
    pub(crate) fn plan(
        last_size: usize,
        last_commit: Duration,
        waiting: usize,
        max: usize,
    ) -> Option<Linger> {
        if last_size <= 1 || max <= 1 {
            return None;
        }
        let expected = last_size.saturating_add(waiting).min(max);
        let budget = (last_commit / 2).min(MAX_LINGER);
        (expected > waiting && !budget.is_zero()).then_some(Linger { expected, budget })
    }
}

/// Gather queued jobs into `batch` without waiting, up to `max`.
fn drain(rx: &mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
}

/// Wait for more jobs as `linger` allows, from `first` (when the batch's first job came).
fn gather(
    rx: &mpsc::Receiver<Job>,
    batch: &mut Vec<Job>,
    max: usize,
    linger: Linger,
    first: Instant,
) {
    let deadline = first + linger.budget;
    while batch.len() < linger.expected.min(max) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(LINGER_GAP.min(deadline - now)) {
            Ok(j) => {
                batch.push(j);
                drain(rx, batch, max);
            }
            Err(_) => break,
        }
    }
}

pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    pub(crate) stats: Arc<WriterStats>,
}

fn commit_failed(e: &StoreError) -> StoreError {
    StoreError::Corrupt(format!("the commit failed and nothing was written: {e}"))
}

impl Writer {
    pub(crate) fn start(
        mut session: Box<dyn WriteTx>,
        durability: Durability,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(WriterStats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("okey-store-writer".into())
            .spawn(move || {
                let max = match durability {
                    Durability::GroupCommit => MAX_BATCH,
                    Durability::PerCommit => 1,
                };
                let mut batch: Vec<Job> = Vec::with_capacity(64);
                let (mut last_size, mut last_commit) = (0, Duration::ZERO);
                loop {
                    // Requests already queued when the last transaction finished.
                    drain(&rx, &mut batch, max);
                    let waiting = batch.len();
                    if batch.is_empty() {
                        match rx.recv() {
                            Ok(first) => batch.push(first),
                            Err(_) => break,
                        }
                        drain(&rx, &mut batch, max);
                    }
                    if let Some(linger) = Linger::plan(last_size, last_commit, waiting, max) {
                        let started = Instant::now();
                        gather(&rx, &mut batch, max, linger, started);
                        st.linger_micros
                            .fetch_add(micros(started.elapsed()), Ordering::Relaxed);
                    }
                    last_size = batch.len();
                    last_commit = run_batch(session.as_mut(), &mut batch, &st);
                }
            })
            .map_err(|e| StoreError::io("cannot start the writer thread", "", e))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(job)
            .map_err(|_| StoreError::WriterGone)
    }

    /// Run `f` in the writer and wait for the durable result (async callers). `savepoint`:
    /// see [`Job::savepoint`].
    pub(crate) async fn run<T, F>(&self, savepoint: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(job(savepoint, f, move |r| {
            let _ = reply.send(r);
        }))?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Run `f` in the writer and wait for the durable result (blocking callers; safe to call
    /// from inside an async runtime, where it blocks that worker for the commit).
    pub(crate) fn run_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.send(job(true, f, move |r| {
            let _ = reply.send(r);
        }))?;
        answer.recv().map_err(|_| StoreError::WriterGone)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what is queued and exit.
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

fn job<T, F, R>(savepoint: bool, f: F, reply: R) -> Job
where
    T: Send + 'static,
    F: FnOnce(&mut dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
    R: FnOnce(Result<T, StoreError>) + Send + 'static,
{
    // Whoever gets to it first answers: the job after the commit, or the abort.
    let slot = Arc::new(Mutex::new(Some(reply)));
    let abort_slot = slot.clone();
    Job {
        savepoint,
        run: Box::new(move |tx: &mut dyn WriteTx| {
            let r = match std::panic::catch_unwind(AssertUnwindSafe(|| f(tx))) {
                Ok(r) => r,
                Err(_) => Err(StoreError::Corrupt("a store request panicked".into())),
            };
            let status = match &r {
                Ok(_) => Status::Done,
                Err(StoreError::Conflict) => Status::Refused,
                Err(_) => Status::Failed,
            };
            let deliver: Deliver = Box::new(move |commit: Result<(), StoreError>| {
                if let Some(reply) = take(&slot) {
                    reply(commit.and(r));
                }
            });
            (status, deliver)
        }),
        abort: Box::new(move |e| {
            if let Some(reply) = take(&abort_slot) {
                reply(Err(e));
            }
        }),
    }
}

fn take<R>(slot: &Mutex<Option<R>>) -> Option<R> {
    // The slot is only ever taken whole; a poisoned lock still holds a consistent value.
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Run and commit `batch`, answer its callers, and say how long the commit took.
fn run_batch(tx: &mut dyn WriteTx, batch: &mut Vec<Job>, stats: &WriterStats) -> Duration {
    let n = batch.len();
    let mut delivers: Vec<Deliver> = Vec::with_capacity(n);
    let mut jobs = std::mem::take(batch).into_iter();
    let started = Instant::now();
    let mut committing = started;
    let outcome = (|| -> Result<(), StoreError> {
        tx.begin()?;
        if n == 1 {
            // A lone job needs no savepoint: if it fails, the whole transaction is dropped.
            for j in jobs.by_ref() {
                let (status, d) = (j.run)(tx);
                delivers.push(d);
                if status != Status::Done {
                    tx.rollback()?;
                    return Ok(());
                }
            }
        } else {
            for j in jobs.by_ref() {
                if j.savepoint {
                    tx.savepoint()?;
                }
                let (status, d) = (j.run)(tx);
                delivers.push(d);
                match (j.savepoint, status) {
                    (true, Status::Done) => tx.release()?,
                    (true, _) => tx.rollback_savepoint()?,
                    (false, Status::Done | Status::Refused) => {}
                    (false, Status::Failed) => {
                        return Err(StoreError::Corrupt(
                            "a request failed part-way through".into(),
                        ));
                    }
                }
            }
        }
        committing = Instant::now();
        tx.commit()
    })();
    let done = Instant::now();
    // Jobs the failed transaction never reached are answered with its error.
    let unreached: Vec<Job> = jobs.collect();
    // Counted before anyone is answered, so a caller that reads the stats sees its own batch.
    stats.jobs.fetch_add(n as u64, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    count_into(&BUCKETS, &stats.sizes, n as u64);
    let run = micros(committing.saturating_duration_since(started));
    let commit = micros(done.saturating_duration_since(committing));
    stats.run_micros.fetch_add(run, Ordering::Relaxed);
    stats.commit_micros.fetch_add(commit, Ordering::Relaxed);
    count_into(&COMMIT_BUCKETS_US, &stats.commit_times, commit);
    let took = done.saturating_duration_since(committing);
    match outcome {
        Ok(()) => {
            for d in delivers {
                d(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed; the batch was rolled back");
            let _ = tx.rollback();
            for d in delivers {
                d(Err(commit_failed(&e)));
            }
            for j in unreached {
                (j.abort)(commit_failed(&e));
            }
        }
    }
    took
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_that_was_idle_or_served_one_caller_does_not_wait() {
        let ms = Duration::from_millis;
        assert_eq!(Linger::plan(0, Duration::ZERO, 0, MAX_BATCH), None);
        assert_eq!(Linger::plan(1, ms(3), 0, MAX_BATCH), None);
        assert_eq!(Linger::plan(1, ms(3), 5, MAX_BATCH), None);
        // One transaction per request never gathers.
        assert_eq!(Linger::plan(64, ms(3), 0, 1), None);
        // A commit that took no time leaves nothing to wait for.
        assert_eq!(Linger::plan(64, Duration::ZERO, 0, MAX_BATCH), None);
    }

    #[test]
    fn under_load_it_waits_for_the_requests_in_flight_and_no_longer_than_half_a_commit() {
        let ms = Duration::from_millis;
        // Two groups alternating (37 answered, 27 queued meanwhile): wait for all 64.
        assert_eq!(
            Linger::plan(37, ms(3), 27, MAX_BATCH),
            Some(Linger {
                expected: 64,
                budget: Duration::from_micros(1500),
            })
        );
        // Never beyond MAX_LINGER, never beyond MAX_BATCH.
        assert_eq!(
            Linger::plan(10, ms(40), 0, MAX_BATCH).map(|l| l.budget),
            Some(MAX_LINGER)
        );
        assert_eq!(
            Linger::plan(MAX_BATCH, ms(3), MAX_BATCH, MAX_BATCH),
            None,
            "a full queue starts at once"
        );
    }

    /// `gather` returns as soon as the batch holds the expected count, gives up after one gap
    /// with nobody coming (not after the whole budget), and takes what another thread sent.
    #[test]
    fn gather_stops_at_the_expected_count_or_when_requests_stop_coming() {
        let (tx, rx) = mpsc::channel::<Job>();
        let noop = || job(false, |_| Ok(()), |_: Result<(), StoreError>| {});
        for _ in 0..3 {
            tx.send(noop()).expect("send");
        }
        let mut batch = Vec::new();
        drain(&rx, &mut batch, MAX_BATCH);
        assert_eq!(batch.len(), 3);
        // Expected reached: returns at once, however long the budget.
        let long = Linger {
            expected: 3,
            budget: Duration::from_secs(60),
        };
        let t = Instant::now();
        gather(&rx, &mut batch, MAX_BATCH, long, t);
        assert_eq!(batch.len(), 3);
        // Fewer than expected and nobody coming: gives up after one gap, not the budget.
        let more = Linger {
            expected: 10,
            budget: Duration::from_secs(60),
        };
        gather(&rx, &mut batch, MAX_BATCH, more, Instant::now());
        assert_eq!(batch.len(), 3);
        assert!(t.elapsed() < Duration::from_secs(30));
        // A request sent by another thread is taken.
        let sender = std::thread::spawn(move || {
            tx.send(noop()).expect("send");
            tx
        });
        let tx = sender.join().expect("sender");
        gather(&rx, &mut batch, MAX_BATCH, more, Instant::now());
        assert_eq!(batch.len(), 4);
        drop(tx);
    }
}
