//! The runtime: runs by id (idempotency: a run's id is the client's `idempotencyKey`), one run
//! at a time per session with a bounded queue behind it, abort, wait, and the outcomes of
//! finished runs (a bounded cache) for repeats and `agent.wait`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::events::RunEvents;
use crate::host::Host;
use crate::http;
use crate::run::{self, Outcome, RunCtx};
use crate::store::{Store, StoreError};
use crate::transcript::{Image, Message};

/// Runs waiting behind the running one, per session.
pub const MAX_QUEUED_PER_SESSION: usize = 8;
/// Finished runs remembered (for repeats of their idempotency key and `agent.wait`).
pub const MAX_FINISHED: usize = 256;
/// How long `chat.abort` waits for the run to wind down before it answers.
pub const ABORT_GRACE: Duration = Duration::from_secs(5);

/// A run to start.
#[derive(Debug, Clone)]
pub struct StartRun {
    /// The session (normalized key).
    pub session_key: String,
    /// The user's text as the transcript keeps it.
    pub message: String,
    /// Attached images.
    pub images: Vec<Image>,
    /// The run id (`idempotencyKey`).
    pub run_id: String,
    /// The connection that asked.
    pub origin: Option<u64>,
    /// How a new session came to be (`operator`, `run`, `channel`).
    pub created_via: String,
    /// A model for this run only.
    pub model: Option<String>,
}

/// What starting a run did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// A new run; its user turn is in the transcript at `message_seq`.
    Started {
        /// The transcript position of the user turn.
        message_seq: u64,
    },
    /// A run with this id is admitted or running.
    InFlight,
    /// A run with this id finished.
    Finished(Outcome),
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The session's queue is full.
    #[error("session busy: {0} runs are waiting")]
    Busy(usize),
    /// The same id was used for a different message.
    #[error("This message ID was already used for different input")]
    Conflict,
    /// The user turn could not be saved.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Active {
    session_key: String,
    message: String,
    abort: watch::Sender<bool>,
    done: watch::Receiver<Option<Outcome>>,
}

#[derive(Default)]
struct State {
    active: HashMap<String, Active>,
    /// Finished runs: id, the message that started it, the outcome.
    finished: VecDeque<(String, String, Outcome)>,
    sessions: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    waiting: HashMap<String, usize>,
}

/// The agent runtime.
pub struct Agent {
    host: Arc<dyn Host>,
    config: Arc<AgentConfig>,
    store: Arc<Store>,
    http: http::Client,
    state: Mutex<State>,
    cron: crate::cron::Cron,
    /// System events waiting for a session's next turn (`wake`, cron `systemEvent`).
    system: Mutex<HashMap<String, VecDeque<String>>>,
}

/// System events queued per session…
pub const MAX_SYSTEM_EVENTS: usize = 20;
/// …each cut to this many characters.
pub const MAX_SYSTEM_EVENT_CHARS: usize = 2000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    /// Opens the session store and makes the runtime.
    pub fn new(host: Arc<dyn Host>, config: AgentConfig) -> Result<Arc<Agent>, StoreError> {
        let store = Store::open(&config.sessions_dir, config.store)?;
        let cron_path = config
            .sessions_dir
            .parent()
            .unwrap_or(&config.sessions_dir)
            .join("cron")
            .join("jobs.json");
        Ok(Arc::new(Agent {
            host,
            config: Arc::new(config),
            store: Arc::new(store),
            http: http::Client::new(),
            state: Mutex::new(State::default()),
            cron: crate::cron::Cron::open(cron_path),
            system: Mutex::new(HashMap::new()),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The session store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The HTTP client (providers; channels reuse it for their APIs).
    pub fn http(&self) -> &http::Client {
        &self.http
    }

    /// The host.
    pub fn host(&self) -> &Arc<dyn Host> {
        &self.host
    }

    /// The scheduled jobs.
    pub fn cron(&self) -> &crate::cron::Cron {
        &self.cron
    }

    /// Queues `text` for the next turn of `session_key` (oldest dropped past the bound).
    pub fn queue_system_event(&self, session_key: &str, text: &str) {
        let mut sys = lock(&self.system);
        let q = sys.entry(session_key.to_owned()).or_default();
        q.push_back(text.chars().take(MAX_SYSTEM_EVENT_CHARS).collect());
        while q.len() > MAX_SYSTEM_EVENTS {
            q.pop_front();
        }
    }

    fn take_system_events(&self, session_key: &str) -> Vec<String> {
        lock(&self.system)
            .remove(session_key)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Whether `run_id` is admitted or running.
    pub fn is_active(&self, run_id: &str) -> bool {
        lock(&self.state).active.contains_key(run_id)
    }

    /// Run ids active in `session_key`.
    pub fn active_in(&self, session_key: &str) -> Vec<String> {
        lock(&self.state)
            .active
            .iter()
            .filter(|(_, a)| a.session_key == session_key)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn finished(&self, run_id: &str) -> Option<Outcome> {
        lock(&self.state)
            .finished
            .iter()
            .rev()
            .find(|(id, _, _)| id == run_id)
            .map(|(_, _, o)| o.clone())
    }

    /// Starts a run (or reports the one with the same id). The user turn is on disk when this
    /// returns `Started`.
    ///
    /// Boxed: a run's tools may schedule jobs that start runs (a cycle of futures whose `Send`
    /// the compiler cannot infer).
    pub fn start(
        self: &Arc<Self>,
        req: StartRun,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Started, StartError>> + Send>>
    {
        Box::pin(self.clone().start_inner(req))
    }

    async fn start_inner(self: Arc<Self>, req: StartRun) -> Result<Started, StartError> {
        let (abort_tx, abort_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(None);
        let gate = {
            let mut st = lock(&self.state);
            if let Some(a) = st.active.get(&req.run_id) {
                if a.message != req.message {
                    return Err(StartError::Conflict);
                }
                return Ok(Started::InFlight);
            }
            if let Some((_, m, o)) = st
                .finished
                .iter()
                .rev()
                .find(|(id, _, _)| *id == req.run_id)
            {
                if *m != req.message {
                    return Err(StartError::Conflict);
                }
                return Ok(Started::Finished(o.clone()));
            }
            let waiting = st.waiting.get(&req.session_key).copied().unwrap_or(0);
            if waiting > MAX_QUEUED_PER_SESSION {
                return Err(StartError::Busy(waiting));
            }
            *st.waiting.entry(req.session_key.clone()).or_default() += 1;
            st.active.insert(
                req.run_id.clone(),
                Active {
                    session_key: req.session_key.clone(),
                    message: req.message.clone(),
                    abort: abort_tx,
                    done: done_rx,
                },
            );
            st.sessions
                .entry(req.session_key.clone())
                .or_default()
                .clone()
        };
        let saved = self.save_user_turn(&req).await;
        let message_seq = match saved {
            Ok(s) => s,
            Err(e) => {
                self.forget(&req.run_id, &req.session_key, None);
                return Err(e);
            }
        };
        let agent = self.clone();
        tokio::spawn(async move {
            let _turn = gate.lock().await;
            let entry = agent.store.get(&req.session_key);
            let session_id = entry.map(|e| e.session_id).unwrap_or_default();
            let events = RunEvents::new(
                agent.host.clone(),
                req.run_id.clone(),
                req.session_key.clone(),
                session_id,
                req.origin,
            );
            let ctx = RunCtx {
                agent: agent.clone(),
                host: agent.host.clone(),
                config: agent.config.clone(),
                store: agent.store.clone(),
                http: agent.http.clone(),
                abort: abort_rx,
                events,
                model: req.model.clone(),
                partial: String::new(),
            };
            crate::watch::changed(
                &agent,
                &req.session_key,
                json!({ "phase": "start", "runId": req.run_id }),
            );
            let outcome = run::run(ctx).await;
            agent.forget(&req.run_id, &req.session_key, Some(outcome.clone()));
            crate::watch::changed(
                &agent,
                &req.session_key,
                json!({ "phase": "end", "runId": req.run_id }),
            );
            let _ = done_tx.send(Some(outcome));
        });
        Ok(Started::Started { message_seq })
    }

    async fn save_user_turn(&self, req: &StartRun) -> Result<u64, StartError> {
        let store = self.store.clone();
        let req = req.clone();
        let events = self.take_system_events(&req.session_key);
        let key = req.session_key.clone();
        let r = tokio::task::spawn_blocking(move || {
            let now = pincer_os::now_ms();
            store.ensure(&req.session_key, &req.created_via, now)?;
            // A channel replays a stored message after a crash with the same run id: its user
            // turn is on disk already, once is enough.
            if req.created_via == "channel" {
                let lines = store.transcript(&req.session_key).unwrap_or_default();
                let known = lines.iter().rev().find_map(|l| match &l.message {
                    Message::User {
                        run_id: Some(r), ..
                    } if *r == req.run_id => Some((l.seq, l.message.clone())),
                    _ => None,
                });
                if let Some(k) = known {
                    return Ok(k);
                }
            }
            let mut text = String::new();
            for e in &events {
                text.push_str(&format!("System: {e}\n"));
            }
            if !text.is_empty() {
                text.push('\n');
            }
            let text = format!("{text}[{}] {}", crate::prompt::stamp(now), req.message);
            let message = Message::User {
                text,
                images: req.images,
                timestamp: now,
                run_id: Some(req.run_id),
            };
            store
                .append(&req.session_key, &message)
                .map(|seq| (seq, message))
        })
        .await;
        match r {
            Ok(r) => {
                let (seq, message) = r?;
                crate::watch::appended(self, &key, seq, &message);
                Ok(seq)
            }
            Err(e) => Err(StartError::Store(StoreError::Io {
                path: self.store.dir().to_owned(),
                source: std::io::Error::other(e.to_string()),
            })),
        }
    }

    fn forget(&self, run_id: &str, session_key: &str, outcome: Option<Outcome>) {
        let mut st = lock(&self.state);
        let message = st
            .active
            .remove(run_id)
            .map(|a| a.message)
            .unwrap_or_default();
        if let Some(n) = st.waiting.get_mut(session_key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.waiting.remove(session_key);
                st.sessions.remove(session_key);
            }
        }
        if let Some(o) = outcome {
            st.finished.push_back((run_id.to_owned(), message, o));
            while st.finished.len() > MAX_FINISHED {
                st.finished.pop_front();
            }
        }
    }

    /// Aborts `run_id` (or every run of `session_key`) and waits (bounded) until each has
    /// sent its `chat aborted`. The ids aborted.
    pub async fn abort(&self, session_key: &str, run_id: Option<&str>) -> Vec<String> {
        let targets: Vec<(String, watch::Receiver<Option<Outcome>>)> = {
            let st = lock(&self.state);
            st.active
                .iter()
                .filter(|(id, a)| {
                    a.session_key == session_key && run_id.is_none_or(|r| r == id.as_str())
                })
                .map(|(id, a)| {
                    let _ = a.abort.send(true);
                    (id.clone(), a.done.clone())
                })
                .collect()
        };
        for (_, done) in &targets {
            let mut done = done.clone();
            let _ = tokio::time::timeout(ABORT_GRACE, done.wait_for(|o| o.is_some())).await;
        }
        targets.into_iter().map(|(id, _)| id).collect()
    }

    /// The outcome of `run_id`, waiting up to `timeout` for an active one; `None` when it is
    /// unknown or still running at the deadline.
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> Option<Outcome> {
        if let Some(o) = self.finished(run_id) {
            return Some(o);
        }
        let done = lock(&self.state).active.get(run_id).map(|a| a.done.clone());
        match done {
            Some(mut d) => match tokio::time::timeout(timeout, d.wait_for(|o| o.is_some())).await {
                Ok(Ok(o)) => o.clone(),
                _ => self.finished(run_id),
            },
            None => {
                tokio::time::sleep(timeout).await;
                self.finished(run_id)
            }
        }
    }
}
