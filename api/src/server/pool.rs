//! Bounded worker pools: encoding and index work run here, never on the async runtime's threads,
//! and a full queue is refused (503 with Retry-After) instead of growing without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting and running, for `/metrics`.
#[derive(Default)]
pub struct Occupancy {
    /// Jobs in the queue, not picked up yet.
    pub queued: AtomicUsize,
    /// Jobs running.
    pub active: AtomicUsize,
}

/// A fixed set of threads fed by a bounded queue.
pub struct Pool {
    name: String,
    sender: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    occupancy: Arc<Occupancy>,
}

/// The pool's queue is full.
#[derive(Debug)]
pub struct Busy;

impl Pool {
    /// `threads` workers, at most `queue` jobs waiting.
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let occupancy = Arc::new(Occupancy::default());
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (receiver, occupancy) = (Arc::clone(&receiver), Arc::clone(&occupancy));
            handles.push(
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || work(&receiver, &occupancy))?,
            );
        }
        Ok(Pool { name: name.to_string(), sender: Mutex::new(Some(sender)), threads: Mutex::new(handles), occupancy })
    }

    /// The pool's name (its threads are named after it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Jobs waiting and running now.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.occupancy.queued.load(Ordering::Relaxed), self.occupancy.active.load(Ordering::Relaxed))
    }

    /// Queues `f`; its result arrives on the returned receiver. Refuses when the queue is full.
    pub fn try_run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        // Counted before it can be picked up, so `queued` never goes below zero.
        self.occupancy.queued.fetch_add(1, Ordering::Relaxed);
        match sender.as_ref().map(|s| s.try_send(job)) {
            Some(Ok(())) => Ok(rx),
            Some(Err(TrySendError::Full(_))) | Some(Err(TrySendError::Disconnected(_))) | None => {
                self.occupancy.queued.fetch_sub(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }

    /// Stops taking jobs, finishes the queued ones and joins the threads.
    pub fn shutdown(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        for handle in self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = handle.join();
        }
    }
}

fn work(receiver: &Mutex<Receiver<Job>>, occupancy: &Occupancy) {
    loop {
        let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            Ok(job) => {
                occupancy.active.fetch_add(1, Ordering::Relaxed);
                occupancy.queued.fetch_sub(1, Ordering::Relaxed);
                // A panicking job must not take the worker down with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                occupancy.active.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_refuses_when_full() {
        let pool = Pool::new("test", 1, 1).unwrap();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let first = pool.try_run(move || gate_rx.recv().is_ok()).unwrap(); // occupies the worker
        while pool.occupancy() != (0, 1) {
            std::thread::yield_now();
        }
        let second = pool.try_run(|| 2).unwrap(); // waits in the queue
        assert_eq!(pool.occupancy(), (1, 1));
        assert!(pool.try_run(|| 3).is_err(), "the queue holds one job");
        gate_tx.send(()).unwrap();
        assert!(first.await.unwrap());
        assert_eq!(second.await.unwrap(), 2);
        let panicking = pool.try_run(|| -> u8 { panic!("boom") }).unwrap();
        assert!(panicking.await.is_err(), "a panic drops the reply, not the pool");
        assert_eq!(pool.try_run(|| 4).unwrap().await.unwrap(), 4);
        pool.shutdown();
        assert!(pool.try_run(|| 5).is_err());
    }
}
