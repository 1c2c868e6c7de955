//! Cases on the job queue: transactional enqueue, deduplication, claim order, leases, retries, stats,
//! hand-over (`accept`).
//!
//! The `queue_*` cases need only a [`JobQueue`] (a fresh, empty one), so a queue that is not part of a
//! store (a Redis queue, say) runs them through [`job_queue_conformance_tests!`](crate::job_queue_conformance_tests);
//! the `job_*` cases run them on a store's own queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use evently_core::ports::JobStats;
use evently_core::{Job, JobId, JobQueue, JobStatus, Store};

use super::fixtures::*;

const LEASE: Duration = Duration::from_secs(60);

/// Claims at `now` and returns the claimed ids.
async fn claim(q: &Arc<dyn JobQueue>, limit: u32, now: DateTime<Utc>) -> HashSet<JobId> {
    let jobs = q.claim(limit, now, LEASE).await.expect("claim");
    jobs.iter().map(|j| j.id).collect()
}

async fn stored(q: &Arc<dyn JobQueue>, id: JobId) -> Job {
    q.job(id).await.expect("read job").expect("job exists")
}

async fn enqueue(q: &Arc<dyn JobQueue>, job: &evently_core::NewJob) -> JobId {
    q.enqueue(job)
        .await
        .expect("enqueue")
        .expect("not deduplicated")
}

async fn stats(q: &Arc<dyn JobQueue>) -> JobStats {
    q.stats().await.expect("stats")
}

/// A job enqueued through a transaction (a change set's `new_jobs`) exists and is claimable once the
/// transaction commits, with the fields it was given; one enqueued in a rolled-back or dropped
/// transaction never is.
pub async fn job_enqueued_in_a_transaction_exists_only_if_committed(store: Arc<dyn Store>) {
    let q = store.job_queue();
    let base = stats(&q).await;
    let (rolled_back, dropped, committed) = (job(at(0), 0), job(at(0), 0), job(at(-5), 3));
    let mut tx = begin(&store).await;
    tx.enqueue_job(&rolled_back).await.expect("enqueue");
    tx.rollback().await.expect("rollback");
    {
        let mut tx = begin(&store).await;
        tx.enqueue_job(&dropped).await.expect("enqueue");
    }
    let mut tx = begin(&store).await;
    tx.enqueue_job(&committed).await.expect("enqueue");
    tx.commit().await.expect("commit");

    assert_eq!(stats(&q).await.queued, base.queued + 1, "one job queued");
    let claimed = q.claim(10, at(0), LEASE).await.expect("claim");
    let got: Vec<_> = claimed.iter().map(as_new).collect();
    assert_same_jobs(&got, std::slice::from_ref(&committed), "claimed");
    let j = stored(&q, claimed[0].id).await;
    assert_eq!((j.status, j.attempts), (JobStatus::Running, 1));
}

/// A dedupe key blocks a second job while the first is queued or running, whether the second comes
/// through the queue (`enqueue` answers `None`) or through a transaction (its change set commits
/// without it); one change set with two jobs of one key queues the first only; the key is free again
/// once its job is done or dead.
pub async fn job_dedupe_key_blocks_until_done(store: Arc<dyn Store>) {
    let q = store.job_queue();
    let key = unique("dedupe");
    let blocked = |what: &'static str| {
        let (q, store, key) = (q.clone(), store.clone(), key.clone());
        async move {
            let before = stats(&q).await;
            assert_eq!(
                q.enqueue(&keyed_job(&key)).await.expect("enqueue"),
                None,
                "{what}"
            );
            let mut tx = begin(&store).await;
            tx.enqueue_job(&keyed_job(&key))
                .await
                .expect("enqueue in tx");
            tx.commit().await.expect("commit");
            assert_eq!(stats(&q).await, before, "{what}: nothing enqueued");
        }
    };
    let base = stats(&q).await;
    let mut tx = begin(&store).await;
    let (once, twice) = (keyed_job(&key), keyed_job(&key));
    tx.apply(evently_core::Changes {
        new_jobs: vec![once.clone(), twice],
        ..evently_core::Changes::default()
    })
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    assert_eq!(
        stats(&q).await.queued,
        base.queued + 1,
        "one job of the key"
    );
    blocked("queued").await;
    let claimed = q.claim(10, at(0), LEASE).await.expect("claim");
    let got: Vec<_> = claimed.iter().map(as_new).collect();
    assert_same_jobs(&got, &[once], "the first job of the key");
    let first = claimed[0].id;
    blocked("running").await;
    q.complete(first).await.expect("complete");
    assert_eq!(stored(&q, first).await.status, JobStatus::Done);

    let second = enqueue(&q, &keyed_job(&key)).await;
    assert_ne!(second, first);
    assert_eq!(claim(&q, 10, at(0)).await, HashSet::from([second]));
    q.fail(second, "gave up", None).await.expect("fail");
    let third = keyed_job(&key);
    let mut tx = begin(&store).await;
    tx.enqueue_job(&third).await.expect("enqueue in tx");
    tx.commit().await.expect("commit");
    let claimed = q.claim(10, at(0), LEASE).await.expect("claim");
    assert!(
        claimed.iter().all(|j| ![first, second].contains(&j.id)),
        "a fresh job after a dead one"
    );
    let got: Vec<_> = claimed.iter().map(as_new).collect();
    assert_same_jobs(&got, &[third], "a fresh job after a dead one");
}

/// `claim` takes due jobs only (`run_at <= now`), highest priority first, then oldest, at most `limit`;
/// a claimed job is running, leased and has one attempt.
pub async fn job_claim_order_and_limit(store: Arc<dyn Store>) {
    queue_claim_order_and_limit(store.job_queue()).await;
}

/// [`job_claim_order_and_limit`] on a bare queue.
pub async fn queue_claim_order_and_limit(q: Arc<dyn JobQueue>) {
    let mut ids = Vec::new();
    for (run_at, priority) in [(-30, 0), (-20, 0), (-10, 5), (30, 9), (-40, -1)] {
        ids.push(enqueue(&q, &job(at(run_at), priority)).await);
    }
    let [old, newer, urgent, future, low] = ids[..] else {
        unreachable!()
    };
    assert_eq!(claim(&q, 2, at(0)).await, HashSet::from([urgent, old]));
    let j = stored(&q, urgent).await;
    assert_eq!((j.status, j.attempts), (JobStatus::Running, 1));
    assert_eq!(j.locked_until, Some(at(0) + chrono::Duration::seconds(60)));
    assert_eq!(claim(&q, 10, at(0)).await, HashSet::from([newer, low]));
    assert!(claim(&q, 10, at(29)).await.is_empty(), "not due yet");
    assert_eq!(claim(&q, 10, at(30)).await, HashSet::from([future]));
}

/// A claimed job is not claimable again while its lease runs; once the lease lapses it is, with its
/// attempts counted up. A completed job is never claimed again.
pub async fn job_lease_lapses(store: Arc<dyn Store>) {
    queue_lease_lapses(store.job_queue()).await;
}

/// [`job_lease_lapses`] on a bare queue.
pub async fn queue_lease_lapses(q: Arc<dyn JobQueue>) {
    let id = enqueue(&q, &job(at(0), 0)).await;
    assert_eq!(claim(&q, 10, at(0)).await, HashSet::from([id]));
    assert!(claim(&q, 10, at(30)).await.is_empty(), "leased");
    assert_eq!(
        claim(&q, 10, at(61)).await,
        HashSet::from([id]),
        "lease lapsed"
    );
    let j = stored(&q, id).await;
    assert_eq!((j.status, j.attempts), (JobStatus::Running, 2));
    assert_eq!(j.locked_until, Some(at(121)));
    q.complete(id).await.expect("complete");
    let j = stored(&q, id).await;
    assert_eq!((j.status, j.locked_until), (JobStatus::Done, None));
    assert!(
        claim(&q, 10, at(100_000)).await.is_empty(),
        "done jobs stay done"
    );
}

/// `fail` with a retry time queues the job again at that time with the error recorded; `fail` without
/// one makes it dead. `stats` counts every state along the way.
pub async fn job_fail_retries_or_buries(store: Arc<dyn Store>) {
    queue_fail_retries_or_buries(store.job_queue()).await;
}

/// [`job_fail_retries_or_buries`] on a bare queue.
pub async fn queue_fail_retries_or_buries(q: Arc<dyn JobQueue>) {
    let base = stats(&q).await;
    let delta = |queued, retrying, running, done, dead| JobStats {
        queued: base.queued + queued,
        retrying: base.retrying + retrying,
        running: base.running + running,
        done: base.done + done,
        dead: base.dead + dead,
    };
    let (id, other) = (
        enqueue(&q, &job(at(0), 1)).await,
        enqueue(&q, &job(at(0), 0)).await,
    );
    assert_eq!(stats(&q).await, delta(2, 0, 0, 0, 0));
    assert_eq!(claim(&q, 10, at(0)).await, HashSet::from([id, other]));
    assert_eq!(stats(&q).await, delta(0, 0, 2, 0, 0));
    q.complete(other).await.expect("complete");

    q.fail(id, "timeout ⏱", Some(at(100))).await.expect("fail");
    let j = stored(&q, id).await;
    assert_eq!(
        (j.status, j.run_at, j.last_error.as_deref(), j.locked_until),
        (JobStatus::Queued, at(100), Some("timeout ⏱"), None)
    );
    assert_eq!(stats(&q).await, delta(1, 1, 0, 1, 0));
    assert!(claim(&q, 10, at(99)).await.is_empty(), "retry not due");
    assert_eq!(claim(&q, 10, at(100)).await, HashSet::from([id]));
    assert_eq!(stored(&q, id).await.attempts, 2);
    assert_eq!(
        stats(&q).await,
        delta(0, 0, 1, 1, 0),
        "claimed: no longer retrying"
    );

    q.fail(id, "fatal", None).await.expect("fail");
    let j = stored(&q, id).await;
    assert_eq!(
        (j.status, j.last_error.as_deref()),
        (JobStatus::Dead, Some("fatal"))
    );
    assert_eq!(stats(&q).await, delta(0, 0, 0, 1, 1));
    assert!(
        claim(&q, 10, at(100_000)).await.is_empty(),
        "dead jobs stay dead"
    );
}

/// [`job_dedupe_key_blocks_until_done`] without transactions: a dedupe key blocks `enqueue` and
/// `accept` while its job is queued or running, and is free again once that job is done or dead.
pub async fn queue_dedupe_key_blocks_until_done(q: Arc<dyn JobQueue>) {
    let key = unique("dedupe");
    let blocked = |what: &'static str| {
        let (q, key) = (q.clone(), key.clone());
        async move {
            assert_eq!(
                q.enqueue(&keyed_job(&key)).await.expect("enqueue"),
                None,
                "{what}"
            );
            let other = handed_over(&keyed_job(&key));
            assert!(!q.accept(&other).await.expect("accept"), "{what}: accept");
            assert!(q.job(other.id).await.expect("read").is_none(), "{what}");
        }
    };
    let first = enqueue(&q, &keyed_job(&key)).await;
    blocked("queued").await;
    assert_eq!(claim(&q, 10, at(0)).await, HashSet::from([first]));
    blocked("running").await;
    q.complete(first).await.expect("complete");
    let second = enqueue(&q, &keyed_job(&key)).await;
    assert_ne!(second, first);
    assert_eq!(claim(&q, 10, at(0)).await, HashSet::from([second]));
    q.fail(second, "gave up", None).await.expect("fail");
    let third = handed_over(&keyed_job(&key));
    assert!(
        q.accept(&third).await.expect("accept"),
        "free after a dead job"
    );
    assert_eq!(
        stored(&q, third.id).await.dedupe_key.as_deref(),
        Some(key.as_str())
    );
}

/// Enqueues made at once (a queue may send them to its server together): each gets its own job, but
/// of those sharing one dedupe key exactly one gets in.
pub async fn queue_concurrent_enqueues_keep_one_per_dedupe_key(q: Arc<dyn JobQueue>) {
    let key = unique("together");
    let calls = (0..32).map(|i| {
        let q = q.clone();
        let job = if i % 2 == 0 {
            keyed_job(&key)
        } else {
            job(at(0), 0)
        };
        tokio::spawn(async move { (i % 2 == 0, q.enqueue(&job).await.expect("enqueue")) })
    });
    let mut keyed = Vec::new();
    let mut plain = HashSet::new();
    for call in calls {
        match call.await.expect("enqueue task") {
            (true, id) => keyed.extend(id),
            (false, id) => assert!(plain.insert(id.expect("a job without a key gets in"))),
        }
    }
    assert_eq!(keyed.len(), 1, "one job per dedupe key: {keyed:?}");
    assert_eq!(plain.len(), 16);
    let all: HashSet<JobId> = plain.iter().copied().chain(keyed.iter().copied()).collect();
    assert_eq!(claim(&q, 100, at(0)).await, all);
}

/// [`queue_concurrent_enqueues_keep_one_per_dedupe_key`] on a store's own queue.
pub async fn job_concurrent_enqueues_keep_one_per_dedupe_key(store: Arc<dyn Store>) {
    queue_concurrent_enqueues_keep_one_per_dedupe_key(store.job_queue()).await;
}

/// `complete_many` and `accept_many` have the effect of the single calls, many jobs at a time:
/// completing is idempotent and refuses an unknown id; accepting refuses an id it has (also one
/// earlier in the same call) and a live dedupe key.
pub async fn queue_complete_many_and_accept_many(q: Arc<dyn JobQueue>) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enqueue(&q, &job(at(0), 0)).await);
    }
    assert_eq!(claim(&q, 10, at(0)).await, ids.iter().copied().collect());
    q.complete_many(&ids).await.expect("complete_many");
    for id in &ids {
        assert_eq!(stored(&q, *id).await.status, JobStatus::Done);
    }
    q.complete_many(&ids)
        .await
        .expect("completing again is harmless");
    q.complete_many(&[]).await.expect("nothing to complete");
    assert!(
        q.complete_many(&[JobId::new()]).await.is_err(),
        "an unknown id is refused"
    );

    let key = unique("many");
    let (a, b) = (handed_over(&job(at(0), 0)), handed_over(&job(at(0), 0)));
    let (c, d) = (handed_over(&keyed_job(&key)), handed_over(&keyed_job(&key)));
    let taken = q
        .accept_many(&[a.clone(), b.clone(), c.clone(), d.clone(), a.clone()])
        .await
        .expect("accept_many");
    assert_eq!(taken, vec![true, true, true, false, false]);
    for taken in [&a, &b, &c] {
        let s = stored(&q, taken.id).await;
        assert_eq!((s.status, s.attempts), (JobStatus::Queued, 1));
    }
    assert!(q.job(d.id).await.expect("read").is_none());
    assert!(
        q.accept_many(&[])
            .await
            .expect("nothing to accept")
            .is_empty()
    );
}

/// [`queue_complete_many_and_accept_many`] on a store's own queue.
pub async fn job_complete_many_and_accept_many(store: Arc<dyn Store>) {
    queue_complete_many_and_accept_many(store.job_queue()).await;
}

/// A job as another queue hands it over: an id of its own, one attempt made, an error recorded.
fn handed_over(job: &evently_core::NewJob) -> Job {
    Job {
        id: JobId::new(),
        payload: job.payload.clone(),
        priority: job.priority,
        status: JobStatus::Running,
        run_at: job.run_at,
        attempts: 1,
        max_attempts: job.max_attempts,
        dedupe_key: job.dedupe_key.clone(),
        last_error: Some("smtp down".into()),
        locked_until: Some(at(3600)),
        created_at: at(-5),
    }
}

/// [`queue_accept_is_idempotent`] on a store's own queue.
pub async fn job_accept_is_idempotent(store: Arc<dyn Store>) {
    queue_accept_is_idempotent(store.job_queue()).await;
}

/// `accept` queues a handed-over job keeping its id, payload, priority, `run_at`, attempts,
/// `max_attempts`, dedupe key, last error and `created_at`; it is refused (returns `false`, changes
/// nothing) while the queue holds a job with that id: queued, running or done.
pub async fn queue_accept_is_idempotent(q: Arc<dyn JobQueue>) {
    let base = stats(&q).await;
    let mut sent = handed_over(&job(at(-10), 4));
    assert!(q.accept(&sent).await.expect("accept"), "a new id");
    let got = stored(&q, sent.id).await;
    sent.status = JobStatus::Queued;
    sent.locked_until = None;
    assert_eq!(got, sent, "every field kept, queued here");
    let s = stats(&q).await;
    assert_eq!(
        (s.queued - base.queued, s.retrying - base.retrying),
        (1, 1),
        "queued, and retrying since it failed before"
    );
    assert!(!q.accept(&sent).await.expect("accept"), "queued: refused");

    let claimed = q.claim(10, at(0), LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, claimed[0].attempts), (sent.id, 2));
    let again = Job {
        priority: 9,
        ..sent.clone()
    };
    assert!(!q.accept(&again).await.expect("accept"), "running: refused");
    q.complete(sent.id).await.expect("complete");
    assert!(!q.accept(&again).await.expect("accept"), "done: refused");
    let j = stored(&q, sent.id).await;
    assert_eq!((j.status, j.priority), (JobStatus::Done, 4), "unchanged");
    assert!(
        claim(&q, 10, at(100_000)).await.is_empty(),
        "a refused hand-over runs nothing"
    );
}
