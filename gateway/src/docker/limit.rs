//! How many connections one client may hold open at once.
//!
//! A client is its identity (a uid, a certificate subject), so a limit
//! holds however many sockets it opens; what it holds beyond the limit is
//! answered and closed, and never reaches the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open connections per client identity, and how many each may hold.
pub(crate) struct ConnectionLimit {
    most: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One counted connection; dropping it gives the place back.
pub(crate) struct Counted {
    limit: Arc<ConnectionLimit>,
    client: String,
}

impl ConnectionLimit {
    /// A limit of `most` connections per client.
    pub(crate) fn new(most: usize) -> Self {
        Self {
            most,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// How many connections a client may hold.
    pub(crate) fn most(&self) -> usize {
        self.most
    }

    /// Counts a connection of `client`, or `None` when it holds as many as
    /// it may.
    pub(crate) fn admit(limit: &Arc<Self>, client: &str) -> Option<Counted> {
        let mut open = limit.open.lock().ok()?;
        let count = open.entry(client.to_owned()).or_default();
        if *count >= limit.most {
            return None;
        }
        *count += 1;
        Some(Counted {
            limit: limit.clone(),
            client: client.to_owned(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limit.open.lock()
            && let Some(count) = open.get_mut(&self.client)
        {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_limit_and_gets_places_back() {
        let limit = Arc::new(ConnectionLimit::new(2));
        let first = ConnectionLimit::admit(&limit, "uid:0").expect("room");
        let _second = ConnectionLimit::admit(&limit, "uid:0").expect("room");
        assert!(ConnectionLimit::admit(&limit, "uid:0").is_none());
        // Another client is counted apart.
        assert!(ConnectionLimit::admit(&limit, "uid:1000").is_some());
        drop(first);
        assert!(ConnectionLimit::admit(&limit, "uid:0").is_some());
    }
}
