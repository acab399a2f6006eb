//! Whether the process takes work: what `/readyz` answers besides the
//! database check, so a load balancer sends nothing to a server whose
//! listeners are not all up yet, or that is shutting down and finishing
//! what it has in flight. Whoever starts the listeners (the binary) moves
//! it along; every listener shares it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listeners are being started.
    Starting,
    /// Every listener accepts.
    Ready,
    /// Asked to stop: no new connections, requests in flight finish.
    Stopping,
}

/// The process's [`Phase`], shared.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicU8>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(AtomicU8::new(Phase::Starting as u8)))
    }
}

impl Readiness {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Stopping,
        }
    }

    /// Every listener accepts.
    pub fn ready(&self) {
        // Never back from stopping: a signal may arrive while starting.
        let _ = self.0.compare_exchange(
            Phase::Starting as u8,
            Phase::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub fn stopping(&self) {
        self.0.store(Phase::Stopping as u8, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_then_ready_then_stopping_and_never_back() {
        let readiness = Readiness::default();
        let shared = readiness.clone();
        assert_eq!(shared.phase(), Phase::Starting);
        readiness.ready();
        assert_eq!(shared.phase(), Phase::Ready);
        readiness.stopping();
        readiness.ready();
        assert_eq!(shared.phase(), Phase::Stopping);
    }
}
