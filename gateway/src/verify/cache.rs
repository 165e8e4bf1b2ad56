//! The verdict cache: bounded in entries and time, keyed by digest (with
//! its repository) and rule.
//!
//! Concurrent requests for the same key share one lookup: the first starts
//! it, the others wait for its answer. Only answers the caller marks as
//! worth keeping (successes) stay once the lookup is over; a failure is
//! answered to those waiting and then forgotten, so it is never served as a
//! success and the next request asks again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

type Key = (String, usize);

/// A cache of `V` by (`repository@digest`, rule index).
pub struct Cache<V> {
    entries: Mutex<HashMap<Key, Entry<V>>>,
    capacity: usize,
    ttl: Duration,
}

struct Entry<V> {
    cell: Arc<OnceCell<V>>,
    created: Instant,
}

impl<V: Clone> Cache<V> {
    /// A cache of at most `capacity` entries, each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
        }
    }

    /// The cached value of `key`, or the one `check` produces; `check`
    /// returns the value and whether to keep it. Also says whether the
    /// value came from the cache (or another request's lookup) rather than
    /// from this call's `check`.
    pub async fn get_or_check<F, Fut>(&self, key: Key, check: F) -> (V, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = (V, bool)>,
    {
        if self.capacity == 0 {
            return (check().await.0, false);
        }
        let cell = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let now = Instant::now();
            match entries.get(&key) {
                Some(entry) if now.duration_since(entry.created) < self.ttl => entry.cell.clone(),
                _ => {
                    if entries.len() >= self.capacity {
                        self.evict(&mut entries, now);
                    }
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(
                        key.clone(),
                        Entry {
                            cell: cell.clone(),
                            created: now,
                        },
                    );
                    cell
                }
            }
        };
        // Only the request that ran the lookup learns whether to keep it.
        let mut keep = true;
        let mut ran = false;
        let (keep_flag, ran_flag) = (&mut keep, &mut ran);
        let value = cell
            .get_or_init(|| async move {
                let (value, worth_keeping) = check().await;
                *keep_flag = worth_keeping;
                *ran_flag = true;
                value
            })
            .await
            .clone();
        if !keep {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if entries
                .get(&key)
                .is_some_and(|entry| Arc::ptr_eq(&entry.cell, &cell))
            {
                entries.remove(&key);
            }
        }
        (value, !ran)
    }

    /// Makes room: expired entries go, then the oldest.
    fn evict(&self, entries: &mut HashMap<Key, Entry<V>>, now: Instant) {
        entries.retain(|_, entry| now.duration_since(entry.created) < self.ttl);
        while entries.len() >= self.capacity {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.created)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            entries.remove(&oldest);
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(digest: &str) -> Key {
        (digest.to_owned(), 0)
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_lookup() {
        let cache = Cache::new(8, Duration::from_secs(60));
        let lookups = AtomicUsize::new(0);
        let (release, wait) = tokio::sync::watch::channel(false);
        let lookup = || async {
            lookups.fetch_add(1, Ordering::SeqCst);
            let mut wait = wait.clone();
            let _ = wait.wait_for(|released| *released).await;
            ("verified", true)
        };
        let all =
            futures_util::future::join_all((0..5).map(|_| cache.get_or_check(key("a"), lookup)));
        let released = async {
            tokio::task::yield_now().await;
            let _ = release.send(true);
        };
        let (answers, ()) = tokio::join!(all, released);
        let fresh = answers.iter().filter(|(_, cached)| !cached).count();
        assert_eq!(fresh, 1, "one lookup, four shared answers");
        let answers: Vec<&str> = answers.iter().map(|(answer, _)| *answer).collect();
        assert_eq!(answers, vec!["verified"; 5]);
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        // And it stays.
        assert_eq!(
            cache
                .get_or_check(key("a"), || async { ("again", true) })
                .await
                .0,
            "verified"
        );
    }

    #[tokio::test]
    async fn failures_are_not_kept() {
        let cache = Cache::new(8, Duration::from_secs(60));
        assert_eq!(
            cache
                .get_or_check(key("a"), || async { ("unreachable", false) })
                .await
                .0,
            "unreachable"
        );
        assert!(cache.is_empty());
        assert_eq!(
            cache
                .get_or_check(key("a"), || async { ("verified", true) })
                .await
                .0,
            "verified"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_the_oldest_makes_room() {
        let cache = Cache::new(2, Duration::from_secs(60));
        cache
            .get_or_check(key("a"), || async { ("a1", true) })
            .await;
        tokio::time::advance(Duration::from_secs(1)).await;
        cache
            .get_or_check(key("b"), || async { ("b1", true) })
            .await;
        cache
            .get_or_check(key("c"), || async { ("c1", true) })
            .await;
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache
                .get_or_check(key("a"), || async { ("a2", true) })
                .await
                .0,
            "a2",
            "a was the oldest"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            cache
                .get_or_check(key("c"), || async { ("c2", true) })
                .await
                .0,
            "c2",
            "c expired"
        );
    }
}
