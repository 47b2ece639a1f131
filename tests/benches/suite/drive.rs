//! Runs N tasks with C in flight and times each one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::stats::Measurement;

/// Runs `task(0..total)` with `concurrency` workers pulling the next index; each task is
/// timed from its start to its end.
pub async fn drive<F, Fut>(name: &str, concurrency: usize, total: usize, task: F) -> Measurement
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let task = Arc::new(task);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let task = task.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        return latencies;
                    }
                    let begun = Instant::now();
                    task(index).await;
                    latencies.push(begun.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for worker in workers {
        latencies.extend(worker.await.expect("a benchmark worker panicked"));
    }
    Measurement::new(name, latencies, started.elapsed())
}

/// How many tasks [`drive_warm`] runs unmeasured before `total` measured ones.
pub fn warmup_tasks(total: usize) -> usize {
    (total / 10).max(1)
}

/// `drive` after an untimed warm-up of a tenth of the tasks.
pub async fn drive_warm<F, Fut>(
    name: &str,
    concurrency: usize,
    total: usize,
    task: F,
) -> Measurement
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    drive(name, concurrency, warmup_tasks(total), task.clone()).await;
    drive(name, concurrency, total, task).await
}
