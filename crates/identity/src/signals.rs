//! Wake-ups for whoever waits on a topic in this process: an app holding a
//! long poll for its account's approval requests (`account:<id>`), a
//! browser waiting for the answer to one request (`request:<id>`).
//!
//! Signals only say "look again": the state lives in the database, and a
//! waiter always re-reads it, so a lost or duplicated signal costs at most
//! one fallback re-check. Another process sharing PostgreSQL relays its
//! signals here through the store's `publish` (LISTEN/NOTIFY).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// Topic → the waiters' shared [`Notify`], held weakly: a topic lives as
/// long as someone waits on it.
#[derive(Default)]
pub struct Signals {
    topics: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Signals {
    /// The wake-up for `topic`. Create the `notified()` future and enable
    /// it before reading the state, so a signal in between is not missed.
    pub fn subscribe(&self, topic: &str) -> Arc<Notify> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = topics.get(topic).and_then(Weak::upgrade) {
            return existing;
        }
        // Forget topics nobody waits on any more, now and then.
        if topics.len() >= 64 && topics.len().is_power_of_two() {
            topics.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        topics.insert(topic.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes everyone waiting on `topic` in this process.
    pub fn raise(&self, topic: &str) {
        let waiting = {
            let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
            topics.get(topic).and_then(Weak::upgrade)
        };
        if let Some(notify) = waiting {
            notify.notify_waiters();
        }
    }

    /// How many topics are remembered (some may be unused); for tests.
    pub fn topics(&self) -> usize {
        self.topics.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_raise_wakes_the_waiters_of_that_topic_only() {
        let signals = Signals::default();
        let a = signals.subscribe("request:a");
        let b = signals.subscribe("request:b");
        let woke_a = a.notified();
        let woke_b = b.notified();
        tokio::pin!(woke_a, woke_b);
        woke_a.as_mut().enable();
        woke_b.as_mut().enable();
        signals.raise("request:a");
        tokio::time::timeout(Duration::from_secs(1), woke_a)
            .await
            .expect("the waiter of request:a wakes");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), woke_b).await.is_err(),
            "request:b was not raised"
        );
    }

    #[test]
    fn unused_topics_are_forgotten() {
        let signals = Signals::default();
        let kept = signals.subscribe("kept");
        for i in 0..200 {
            drop(signals.subscribe(&format!("t{i}")));
        }
        assert!(signals.topics() < 200, "{}", signals.topics());
        assert!(Arc::ptr_eq(&kept, &signals.subscribe("kept")));
        signals.raise("nobody-waits");
    }
}
