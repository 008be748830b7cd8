//! Admission to the start-up phase: a class that presses Start at once would otherwise launch
//! every server together and starve them all of CPU until each misses its readiness timeout.
//! Starts hold permits (one per node, at most all of them) from launch until ready or failed;
//! the rest wait in order, and each waiting start's progress stream shows its place in the queue.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::servers::ProgressLog;

/// The start-up phase's permits and the starts waiting for them, in order.
pub struct StartQueue {
    permits: Arc<Semaphore>,
    limit: u32,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_ticket: u64,
    /// Oldest first, as the semaphore serves them.
    queue: Vec<(u64, watch::Sender<ProgressLog>)>,
}

/// Held while a start is in its start-up phase; dropping it admits the next start.
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

impl StartQueue {
    /// A queue admitting `limit` nodes' starts at once; 0 means one per CPU core.
    pub fn new(limit: u32) -> Self {
        let limit = if limit == 0 {
            std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(2)
        } else {
            limit
        };
        Self {
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit,
            waiting: Mutex::new(Waiting::default()),
        }
    }

    /// How many nodes may be in their start-up phase at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Waits until a start of `nodes` nodes may launch. While it waits, its progress stream gets
    /// an event with its `queue_position` (1 = next) whenever that changes.
    pub async fn admit(&self, nodes: u32, progress: &watch::Sender<ProgressLog>) -> Admission {
        let weight = nodes.clamp(1, self.limit);
        let ticket = {
            let mut waiting = self.lock();
            if waiting.queue.is_empty() {
                if let Ok(permit) = Arc::clone(&self.permits).try_acquire_many_owned(weight) {
                    return Admission {
                        _permit: Some(permit),
                    };
                }
            }
            let ticket = waiting.next_ticket;
            waiting.next_ticket += 1;
            waiting.queue.push((ticket, progress.clone()));
            announce(
                &waiting.queue[waiting.queue.len() - 1..],
                waiting.queue.len(),
            );
            ticket
        };
        tracing::debug!(
            ticket,
            nodes,
            "start queued until start-up capacity frees up"
        );
        // Leaves the queue however the wait ends, also when the waiting start is dropped.
        let _queued = Queued {
            queue: self,
            ticket,
        };
        // The semaphore is never closed, so this waits for permits; it serves waiters in order.
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(weight)
            .await
            .ok();
        Admission { _permit: permit }
    }

    fn leave(&self, ticket: u64) {
        let mut waiting = self.lock();
        if let Some(at) = waiting.queue.iter().position(|(t, _)| *t == ticket) {
            waiting.queue.remove(at);
            announce(&waiting.queue[at..], at + 1);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Pushes and removes only: a panic elsewhere cannot leave the queue inconsistent.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A start's place in the queue, given up when dropped.
struct Queued<'a> {
    queue: &'a StartQueue,
    ticket: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.queue.leave(self.ticket);
    }
}

/// Tells each of `waiters` its place, the first being at `first_position`.
fn announce(waiters: &[(u64, watch::Sender<ProgressLog>)], first_position: usize) {
    for (i, (_, progress)) in waiters.iter().enumerate() {
        let position = first_position + i;
        let message = if position == 1 {
            "Waiting to start: next in line".to_owned()
        } else {
            format!("Waiting to start: {} starts ahead", position - 1)
        };
        progress.send_modify(|log| {
            log.events.push(json!({
                "progress": 0,
                "message": message,
                "queue_position": position,
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stream() -> watch::Sender<ProgressLog> {
        watch::channel(ProgressLog::default()).0
    }

    fn positions(progress: &watch::Sender<ProgressLog>) -> Vec<u64> {
        progress
            .borrow()
            .events
            .iter()
            .filter_map(|e| e["queue_position"].as_u64())
            .collect()
    }

    #[tokio::test]
    async fn starts_beyond_the_limit_wait_in_order_and_learn_their_place() {
        let queue = Arc::new(StartQueue::new(2));
        let first = queue.admit(1, &stream()).await;
        let second = queue.admit(1, &stream()).await;
        let (third_progress, fourth_progress) = (stream(), stream());
        let (admitted_tx, mut admitted) = tokio::sync::mpsc::unbounded_channel();
        for (name, progress) in [
            ("third", third_progress.clone()),
            ("fourth", fourth_progress.clone()),
        ] {
            let queue = Arc::clone(&queue);
            let admitted_tx = admitted_tx.clone();
            tokio::spawn(async move {
                let admission = queue.admit(1, &progress).await;
                admitted_tx.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(admission);
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            admitted.try_recv().is_err(),
            "nobody may pass two running starts"
        );
        assert_eq!(positions(&third_progress), [1]);
        assert_eq!(positions(&fourth_progress), [2]);

        drop(first);
        assert_eq!(admitted.recv().await, Some("third"));
        assert_eq!(positions(&fourth_progress), [2, 1], "the fourth moves up");
        drop(second);
        assert_eq!(admitted.recv().await, Some("fourth"));
    }

    #[tokio::test]
    async fn a_cluster_larger_than_the_limit_still_starts_alone() {
        let queue = StartQueue::new(2);
        let big = queue.admit(5, &stream()).await;
        let progress = stream();
        let small =
            tokio::time::timeout(Duration::from_millis(50), queue.admit(1, &progress)).await;
        assert!(small.is_err(), "a 5-node start holds every permit");
        let waiting = stream();
        let queued =
            tokio::time::timeout(Duration::from_millis(50), queue.admit(1, &waiting)).await;
        assert!(queued.is_err());
        assert_eq!(
            positions(&waiting),
            [1],
            "a start that stopped waiting left the queue: the next one is first"
        );
        drop(big);
        let _small = queue.admit(1, &stream()).await;
        assert_eq!(queue.limit(), 2);
    }
}
