//! Progress events of a start, per node: scheduled, pulling, pulled, started, ready.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use crate::{ProgressEvent, ProgressSender};

/// A node's steps, in the order a pod goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Step {
    /// Bound to a Kubernetes node.
    Scheduled = 1,
    /// The kubelet pulls the image.
    Pulling = 2,
    /// The image is there.
    Pulled = 3,
    /// The container runs.
    Started = 4,
    /// The pod is Ready and its server answers HTTP.
    Ready = 5,
}

/// The start's progress: each node's furthest step moves the bar; each (node, step) is told
/// once; notes (waiting reasons) once per distinct text.
pub(super) struct Progress {
    sender: ProgressSender,
    nodes: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    steps: HashSet<(usize, Step)>,
    furthest: BTreeMap<usize, Step>,
    notes: HashSet<String>,
    /// The objects are made (the first step of all).
    created: bool,
}

impl Progress {
    pub(super) fn new(sender: ProgressSender, nodes: u32) -> Self {
        Self {
            sender,
            nodes: nodes as usize,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// 5 to 95: the objects, then five steps per node.
    fn percent(&self, seen: &Seen) -> u8 {
        let total = 1 + 5 * self.nodes;
        let done =
            usize::from(seen.created) + seen.furthest.values().map(|s| *s as usize).sum::<usize>();
        u8::try_from(5 + 90 * done.min(total) / total.max(1)).unwrap_or(95)
    }

    fn send(&self, percent: u8, message: String) {
        // The hub may have stopped listening (client went away); the start goes on.
        let _ = self.sender.send(ProgressEvent::new(percent, message));
    }

    /// The cluster's objects are made.
    pub(super) fn created(&self, message: String) {
        let percent = {
            let mut seen = self.seen();
            seen.created = true;
            self.percent(&seen)
        };
        self.send(percent, message);
    }

    /// Node `index` reached `step`; told once.
    pub(super) fn reached(&self, index: usize, step: Step, message: String) {
        let percent = {
            let mut seen = self.seen();
            if !seen.steps.insert((index, step)) {
                return;
            }
            let furthest = seen.furthest.entry(index).or_insert(step);
            *furthest = (*furthest).max(step);
            self.percent(&seen)
        };
        self.send(percent, message);
    }

    /// A message that does not move the bar (a waiting reason, the rollback); each text once.
    pub(super) fn note(&self, message: String) {
        let percent = {
            let mut seen = self.seen();
            if !seen.notes.insert(message.clone()) {
                return;
            }
            self.percent(&seen)
        };
        self.send(percent, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_moves_forward_once_per_node_and_step_and_stays_below_100() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let progress = Progress::new(tx, 2);
        progress.created("made".into());
        for node in 0..2 {
            for step in [Step::Scheduled, Step::Pulling, Step::Pulled, Step::Started] {
                progress.reached(node, step, format!("node-{node} {step:?}"));
                progress.reached(node, step, "again".into());
            }
        }
        // A late Pulled after Started keeps the bar where it was.
        progress.reached(0, Step::Pulled, "late".into());
        progress.note("waiting".into());
        progress.note("waiting".into());
        progress.reached(0, Step::Ready, "node-0 ready".into());
        progress.reached(1, Step::Ready, "node-1 ready".into());
        let mut events = Vec::new();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        assert!(!events
            .iter()
            .any(|e| e.message == "again" || e.message == "late"));
        assert_eq!(events.iter().filter(|e| e.message == "waiting").count(), 1);
        assert!(
            events.windows(2).all(|w| w[0].progress <= w[1].progress),
            "{events:?}"
        );
        assert_eq!(events.last().map(|e| e.progress), Some(95));
    }
}
