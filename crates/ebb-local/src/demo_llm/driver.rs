//! Runs the engine model's steps in real time: each step's tokens go out when the step's
//! time has passed, to the request they belong to. A request whose client has gone is
//! aborted, freeing its KV blocks (as vLLM does on a disconnect).

use super::metrics::Metrics;
use ebb_sim::engine::{Engine, EngineParams, Rejected, Stage, Step};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// Why a request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The engine cannot run it.
    #[error(transparent)]
    Engine(#[from] Rejected),
    /// Too many requests already wait.
    #[error("{0} requests are already waiting; try again")]
    Busy(usize),
}

/// One request's way out: its tokens' indices, in order; the channel closes after the last.
struct Stream {
    tx: mpsc::UnboundedSender<u32>,
    arrived: Instant,
    scheduled: bool,
    last_token: Option<Instant>,
}

/// The engine, the requests in it and what it measured.
pub struct Driver {
    engine: Mutex<Engine>,
    streams: Mutex<HashMap<u64, Stream>>,
    work: Notify,
    next_id: AtomicU64,
    max_waiting: usize,
    stage: Stage,
    /// vLLM's metrics of this engine.
    pub metrics: Metrics,
}

impl Driver {
    /// An idle engine with `params`, refusing requests once `max_waiting` wait, doing
    /// `stage` of each request (all of it, or one side of disaggregated serving).
    pub fn new(params: EngineParams, max_waiting: usize, stage: Stage) -> Driver {
        Driver {
            engine: Mutex::new(Engine::new(params)),
            streams: Mutex::new(HashMap::new()),
            work: Notify::new(),
            next_id: AtomicU64::new(1),
            max_waiting,
            stage,
            metrics: Metrics::default(),
        }
    }

    /// Queues a request; its tokens' indices come on the receiver.
    pub fn submit(
        &self,
        prompt: u32,
        max_output: u32,
    ) -> Result<(u64, mpsc::UnboundedReceiver<u32>), Refusal> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut engine = self.lock_engine();
            if engine.waiting() >= self.max_waiting {
                return Err(Refusal::Busy(engine.waiting()));
            }
            self.stage.submit(&mut engine, id, prompt, max_output)?;
        }
        let stream = Stream {
            tx,
            arrived: Instant::now(),
            scheduled: false,
            last_token: None,
        };
        self.lock_streams().insert(id, stream);
        self.work.notify_one();
        Ok((id, rx))
    }

    /// (running, waiting, KV usage) now.
    pub fn load(&self) -> (usize, usize, f64) {
        let e = self.lock_engine();
        (e.running(), e.waiting(), e.kv_usage())
    }

    /// Runs steps for as long as the process lives.
    pub async fn run(&self) {
        loop {
            self.drop_abandoned();
            let step = self.lock_engine().step();
            let Some(step) = step else {
                self.work.notified().await;
                continue;
            };
            self.scheduled(&step);
            tokio::time::sleep(Duration::from_secs_f64(step.seconds)).await;
            self.deliver(&step);
        }
    }

    /// Hands a finished step's tokens to their requests and closes the finished ones.
    fn deliver(&self, step: &Step) {
        let now = Instant::now();
        let m = &self.metrics;
        m.prompt_tokens
            .fetch_add(u64::from(step.prefill_tokens), Ordering::Relaxed);
        m.preemptions
            .fetch_add(step.preempted.len() as u64, Ordering::Relaxed);
        let mut streams = self.lock_streams();
        for &(id, index) in &step.tokens {
            let Some(s) = streams.get_mut(&id) else {
                continue;
            };
            match s.last_token {
                None => m.time_to_first_token.observe(now - s.arrived),
                Some(before) => {
                    m.inter_token.observe(now - before);
                    m.time_per_output_token.observe(now - before);
                }
            }
            s.last_token = Some(now);
            m.generation_tokens.fetch_add(1, Ordering::Relaxed);
            let _ = s.tx.send(index);
        }
        for id in &step.finished {
            if let Some(s) = streams.remove(id) {
                m.e2e_latency.observe(now - s.arrived);
                m.successes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts the queue time of the requests a step schedules for the first time.
    fn scheduled(&self, step: &Step) {
        let now = Instant::now();
        let mut streams = self.lock_streams();
        for id in &step.admitted {
            if let Some(s) = streams.get_mut(id).filter(|s| !s.scheduled) {
                s.scheduled = true;
                self.metrics.queue_time.observe(now - s.arrived);
            }
        }
    }

    /// Aborts the requests whose client has gone.
    fn drop_abandoned(&self) {
        let gone: Vec<u64> = {
            let mut streams = self.lock_streams();
            let gone: Vec<u64> = streams
                .iter()
                .filter(|(_, s)| s.tx.is_closed())
                .map(|(id, _)| *id)
                .collect();
            for id in &gone {
                streams.remove(id);
            }
            gone
        };
        if !gone.is_empty() {
            let mut engine = self.lock_engine();
            for id in gone {
                engine.abort(id);
            }
        }
    }

    fn lock_engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}
