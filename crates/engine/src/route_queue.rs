//! The order in which callers waiting for a busy route are served (the route's queue), kept
//! apart from the agency side so that the shared tables (`effects`) can hold it too.

use std::collections::VecDeque;

use crate::ids::CallRef;

/// How soon a waiting caller is served: every normal caller before any low-priority one
/// (repeat callers and watched numbers, issue 12), and those before the lowest (callers who
/// did not pass a flood challenge), each group in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum QueuePriority {
    #[default]
    Normal,
    Low,
    Lowest,
}

impl QueuePriority {
    pub fn as_str(self) -> &'static str {
        match self {
            QueuePriority::Normal => "normal",
            QueuePriority::Low => "low",
            QueuePriority::Lowest => "lowest",
        }
    }
}

/// The callers waiting for one route, in the order they are served.
#[derive(Debug, Default)]
pub(crate) struct RouteQueue {
    waiting: VecDeque<(CallRef, QueuePriority)>,
}

impl RouteQueue {
    /// Adds a caller behind everyone of its priority or higher (a caller already waiting keeps
    /// its place); returns its position, 1 = next.
    pub(crate) fn push(&mut self, call: CallRef, priority: QueuePriority) -> usize {
        if let Some(position) = self.position(call) {
            return position;
        }
        let at = self
            .waiting
            .iter()
            .rposition(|(_, p)| *p <= priority)
            .map_or(0, |i| i + 1);
        self.waiting.insert(at, (call, priority));
        at + 1
    }

    /// Takes a caller out; false if it was not waiting here.
    pub(crate) fn remove(&mut self, call: CallRef) -> bool {
        let Some(i) = self.waiting.iter().position(|(c, _)| *c == call) else {
            return false;
        };
        self.waiting.remove(i);
        true
    }

    /// A caller's position, 1 = next.
    pub(crate) fn position(&self, call: CallRef) -> Option<usize> {
        self.waiting
            .iter()
            .position(|(c, _)| *c == call)
            .map(|i| i + 1)
    }

    /// The caller served next.
    pub(crate) fn front(&self) -> Option<CallRef> {
        self.waiting.front().map(|(c, _)| *c)
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{QueuePriority, RouteQueue};
    use crate::ids::CallRef;

    #[test]
    fn normal_callers_are_served_before_low_priority_ones_each_in_arrival_order() {
        let mut q = RouteQueue::default();
        let (low, normal) = (QueuePriority::Low, QueuePriority::Normal);
        assert_eq!(q.push(CallRef(1), low), 1);
        assert_eq!(q.push(CallRef(2), normal), 1, "a normal caller goes first");
        assert_eq!(q.push(CallRef(3), low), 3);
        assert_eq!(
            q.push(CallRef(4), normal),
            2,
            "behind the earlier normal caller"
        );
        assert_eq!(
            q.push(CallRef(2), low),
            1,
            "a caller already waiting keeps its place"
        );
        let order: Vec<u64> = std::iter::from_fn(|| {
            let next = q.front()?;
            q.remove(next);
            Some(next.0)
        })
        .collect();
        assert_eq!(order, [2, 4, 1, 3]);
        assert!(!q.remove(CallRef(2)));
        assert_eq!(q.len(), 0);
    }
}
