//! The memory budget of all evaluations in flight together.
//!
//! Each policy's `memory` caps one evaluation; nothing in wasmtime caps
//! their sum, so a burst of evaluations of a policy that uses its whole cap
//! could take the gateway to `instances × cap`. Before it instantiates, an
//! evaluation therefore reserves its cap (and one of the pooling
//! allocator's instance slots) here, and gives both back when its store is
//! dropped, however it ended. When the budget is spent, an evaluation waits
//! for another to finish, within its own deadline, and fails if none does
//! in time. Waits and refusals are counted for the metrics.
//!
//! Time on the cores is shared the same way. Nearly every evaluation ends
//! within a millisecond; one still running after its grace period
//! ([`super::LONG_RUNNING_AFTER`]) must hold a [`CoreSlot`] to go on, and
//! there are half as many as cores (at least one). Long evaluations
//! together, a spinning policy's included, can thus take at most half of
//! the machine, and the short ones of every other request always find a
//! core; a long evaluation that finds no slot waits, within its deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Bytes and instance slots that evaluations in flight may reserve.
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    state: Mutex<Left>,
    freed: Condvar,
    waits: AtomicU64,
    refusals: AtomicU64,
}

#[derive(Debug)]
struct Left {
    bytes: u64,
    instances: u32,
}

/// What the budget has seen, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUse {
    /// The budget, in bytes.
    pub total: u64,
    /// Bytes reserved by evaluations in flight.
    pub reserved: u64,
    /// Evaluations that had to wait for the budget.
    pub waits: u64,
    /// Evaluations that waited until their deadline and did not run.
    pub refusals: u64,
}

/// A reservation, given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `bytes` and `instances` slots.
    pub fn new(bytes: u64, instances: u32) -> Self {
        Self {
            total: bytes,
            state: Mutex::new(Left { bytes, instances }),
            freed: Condvar::new(),
            waits: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes` and one instance slot, waiting until `until` at the
    /// latest; `None` if the budget stayed spent (or can never hold
    /// `bytes`).
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64, until: Instant) -> Option<Reservation> {
        let mut left = self.lock();
        let fits = |left: &Left| left.instances > 0 && left.bytes >= bytes;
        if !fits(&left) {
            if bytes > self.total {
                return None;
            }
            self.waits.fetch_add(1, Ordering::Relaxed);
            left = match wait_until(&self.freed, left, until, fits) {
                Some(left) => left,
                None => {
                    self.refusals.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            };
        }
        left.bytes -= bytes;
        left.instances -= 1;
        Some(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// What is reserved now, and the waits and refusals so far.
    pub fn usage(&self) -> BudgetUse {
        let left = self.lock();
        BudgetUse {
            total: self.total,
            reserved: self.total - left.bytes,
            waits: self.waits.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Left> {
        // The state is two numbers, consistent at every unlock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The cores long-running evaluations may use together.
#[derive(Debug)]
pub(crate) struct CoreShare {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A core held by a long-running evaluation, given back when dropped.
#[derive(Debug)]
pub(crate) struct CoreSlot(Arc<CoreShare>);

impl CoreShare {
    /// Half of this machine's cores, at least one.
    pub(crate) fn half_of_the_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new((cores / 2).max(1))
    }

    fn new(slots: usize) -> Self {
        Self {
            free: Mutex::new(slots),
            freed: Condvar::new(),
        }
    }

    /// A slot, waiting until `until` at the latest.
    pub(crate) fn acquire(self: &Arc<Self>, until: Instant) -> Option<CoreSlot> {
        let free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut free = wait_until(&self.freed, free, until, |free| *free > 0)?;
        *free -= 1;
        Some(CoreSlot(self.clone()))
    }
}

impl Drop for CoreSlot {
    fn drop(&mut self) {
        *self
            .0
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Waits on `condvar` until `ready` holds of the guarded state, or until
/// `until`; `None` at the deadline.
fn wait_until<'a, T>(
    condvar: &Condvar,
    mut guard: MutexGuard<'a, T>,
    until: Instant,
    ready: impl Fn(&T) -> bool,
) -> Option<MutexGuard<'a, T>> {
    while !ready(&guard) {
        let now = Instant::now();
        if now >= until {
            return None;
        }
        guard = condvar
            .wait_timeout(guard, until - now)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
    Some(guard)
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut left = self.budget.lock();
        left.bytes += self.bytes;
        left.instances += 1;
        drop(left);
        // Waiters want different sizes: let each look.
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_spent_budget_makes_the_next_wait_then_run() {
        let budget = Arc::new(MemoryBudget::new(100, 8));
        let first = budget.reserve(60, Instant::now()).expect("fits");
        let waiter = std::thread::spawn({
            let budget = budget.clone();
            move || {
                budget
                    .reserve(60, Instant::now() + Duration::from_secs(30))
                    .is_some()
            }
        });
        // The waiter runs once the first reservation is given back.
        while budget.usage().waits == 0 {
            std::thread::yield_now();
        }
        drop(first);
        assert!(waiter.join().expect("no panic"));
        let usage = budget.usage();
        assert_eq!((usage.reserved, usage.waits, usage.refusals), (0, 1, 0));
    }

    #[test]
    fn a_wait_ends_at_its_deadline_and_is_counted() {
        let budget = Arc::new(MemoryBudget::new(100, 8));
        let _held = budget.reserve(100, Instant::now()).expect("fits");
        assert!(budget.reserve(1, Instant::now()).is_none());
        assert_eq!(budget.usage().refusals, 1);
        // More than the whole budget never fits, and is not a wait.
        assert!(budget.reserve(101, Instant::now()).is_none());
        assert_eq!(budget.usage().waits, 1);
    }

    #[test]
    fn long_evaluations_take_turns_on_their_cores() {
        let share = Arc::new(CoreShare::new(1));
        let first = share.acquire(Instant::now()).expect("free");
        assert!(share.acquire(Instant::now()).is_none(), "all taken");
        drop(first);
        assert!(share.acquire(Instant::now()).is_some(), "given back");
    }

    #[test]
    fn instance_slots_are_part_of_the_budget() {
        let budget = Arc::new(MemoryBudget::new(100, 1));
        let _held = budget.reserve(1, Instant::now()).expect("fits");
        assert!(budget.reserve(1, Instant::now()).is_none());
    }
}
