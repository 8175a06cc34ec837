//! Scheduled agent turns (the reference's cron jobs): jobs on disk (one file, written
//! atomically), a scheduler that sleeps until the next one is due, and the history of their
//! runs. A job either starts an agent turn in its session (`agentTurn`) or queues a system
//! event for the next turn (`systemEvent`). Jobs survive restarts; one that came due while the
//! gateway was down runs once when it is back.
//!
//! Schedules: `every` (`everyMs` from `anchorMs`) and `at` (once, ms or ISO-8601 UTC). The
//! reference's `cron` expressions, `on-exit` and `stream` kinds are refused with a message.
//! Bounds: [`MAX_JOBS`] jobs, [`MAX_RUNS`] runs remembered per job.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::host::Audience;
use crate::runtime::{Agent, StartRun, Started};

/// Jobs kept.
pub const MAX_JOBS: usize = 100;
/// Runs remembered per job.
pub const MAX_RUNS: usize = 50;
/// The shortest `everyMs`.
pub const MIN_EVERY_MS: u64 = 1000;

/// One job, as `cron.list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Its id (a UUID).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Created, ms.
    pub created_at_ms: u64,
    /// Changed, ms.
    pub updated_at_ms: u64,
    /// `{kind:"every", everyMs, anchorMs}` or `{kind:"at", at}`.
    pub schedule: Value,
    /// `main`, `isolated`, `current`, `session:<key>`.
    pub session_target: String,
    /// `now` or `next-heartbeat`.
    pub wake_mode: String,
    /// `{kind:"agentTurn", message}` or `{kind:"systemEvent", text}`.
    pub payload: Value,
    /// `{nextRunAtMs?, lastRunAtMs?, lastStatus?}`.
    pub state: Value,
    /// The session for `current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Runs, newest last.
    #[serde(default, skip_serializing)]
    pub runs: Vec<Value>,
}

#[derive(Serialize, Deserialize, Default)]
struct File {
    version: u32,
    jobs: Vec<Job>,
}

/// Why a job cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    /// Bad schedule or payload.
    #[error("{0}")]
    Invalid(String),
    /// No such job.
    #[error("unknown cron job")]
    NotFound,
    /// The jobs file could not be written.
    #[error("cron jobs not saved: {0}")]
    Io(#[from] std::io::Error),
}

/// The jobs and their scheduler.
pub struct Cron {
    path: PathBuf,
    jobs: Mutex<Vec<Job>>,
    changed: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse_at(v: &Value) -> Option<u64> {
    if let Some(ms) = v.as_u64() {
        return Some(ms);
    }
    // YYYY-MM-DDTHH:MM[:SS][.fff]Z
    let s = v.as_str()?.trim_end_matches('Z');
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next().map_or(Some(0.0), |x| x.parse().ok())?;
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + h * 3600 + mi * 60) as f64 + sec) * 1000.0;
    (ms >= 0.0).then_some(ms as u64)
}

/// When `schedule` next fires after `now` (`None`: never again).
fn next_run(schedule: &Value, now: u64, last_run: Option<u64>) -> Result<Option<u64>, String> {
    match schedule["kind"].as_str() {
        Some("every") => {
            let every = schedule["everyMs"]
                .as_u64()
                .filter(|e| *e >= MIN_EVERY_MS)
                .ok_or_else(|| format!("schedule.everyMs must be at least {MIN_EVERY_MS}"))?;
            let anchor = schedule["anchorMs"].as_u64().unwrap_or(now);
            if now < anchor + every {
                return Ok(Some(anchor + every));
            }
            let k = (now - anchor) / every + 1;
            Ok(Some(anchor + k * every))
        }
        Some("at") => {
            let at = parse_at(&schedule["at"])
                .ok_or("schedule.at must be ms since the epoch or an ISO-8601 UTC time")?;
            Ok((last_run.is_none()).then_some(at))
        }
        Some(k @ ("cron" | "on-exit" | "stream")) => Err(format!(
            "schedule kind \"{k}\" is not supported by this gateway (use \"every\" or \"at\")"
        )),
        _ => Err("schedule.kind must be \"every\" or \"at\"".into()),
    }
}

impl Cron {
    /// Loads the jobs in `path` (missing: none).
    pub fn open(path: PathBuf) -> Cron {
        let jobs = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<File>(&b).ok())
            .map(|f| f.jobs)
            .unwrap_or_default();
        Cron {
            path,
            jobs: Mutex::new(jobs),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn save(&self, jobs: &[Job]) -> Result<(), CronError> {
        let f = File {
            version: 1,
            jobs: jobs.to_vec(),
        };
        // `runs` is skipped by Job's Serialize for the wire; keep it on disk.
        let mut v = serde_json::to_value(&f).unwrap_or_default();
        if let Some(arr) = v["jobs"].as_array_mut() {
            for (j, job) in arr.iter_mut().zip(jobs) {
                j["runs"] = json!(job.runs);
            }
        }
        pincer_os::write_atomic(&self.path, v.to_string().as_bytes())?;
        Ok(())
    }

    /// Every job.
    pub fn list(&self) -> Vec<Job> {
        lock(&self.jobs).clone()
    }

    /// The soonest run of an enabled job.
    pub fn next_wake(&self) -> Option<u64> {
        lock(&self.jobs)
            .iter()
            .filter(|j| j.enabled)
            .filter_map(|j| j.state["nextRunAtMs"].as_u64())
            .min()
    }

    /// Where the jobs are kept.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Adds a job.
    pub fn add(
        &self,
        p: &pincer_protocol::agent::CronAddParams,
        now: u64,
    ) -> Result<Job, CronError> {
        let mut schedule = p.schedule.clone();
        if schedule["kind"] == "every" && schedule["anchorMs"].is_null() {
            schedule["anchorMs"] = json!(now);
        }
        let next = next_run(&schedule, now, None).map_err(CronError::Invalid)?;
        match p.payload["kind"].as_str() {
            Some("agentTurn") if p.payload["message"].as_str().is_some_and(|m| !m.is_empty()) => {}
            Some("systemEvent") if p.payload["text"].as_str().is_some_and(|m| !m.is_empty()) => {}
            _ => {
                return Err(CronError::Invalid(
                    "payload must be {kind:\"agentTurn\", message} or {kind:\"systemEvent\", text}"
                        .into(),
                ))
            }
        }
        let target = p.session_target.as_str();
        if !(matches!(target, "main" | "isolated" | "current") || target.starts_with("session:")) {
            return Err(CronError::Invalid(
                "sessionTarget must be main, isolated, current or session:<key>".into(),
            ));
        }
        let job = Job {
            id: pincer_os::uuid_v4(),
            name: p.name.clone(),
            enabled: p.enabled.unwrap_or(true),
            created_at_ms: now,
            updated_at_ms: now,
            schedule,
            session_target: p.session_target.clone(),
            wake_mode: p.wake_mode.clone(),
            payload: p.payload.clone(),
            state: json!({ "nextRunAtMs": next }),
            session_key: p.session_key.clone(),
            runs: vec![],
        };
        let mut jobs = lock(&self.jobs);
        if jobs.len() >= MAX_JOBS {
            return Err(CronError::Invalid(format!("at most {MAX_JOBS} cron jobs")));
        }
        jobs.push(job.clone());
        if let Err(e) = self.save(&jobs) {
            jobs.pop();
            return Err(e);
        }
        drop(jobs);
        self.changed.notify_one();
        Ok(job)
    }

    /// Removes a job.
    pub fn remove(&self, id: &str) -> Result<Job, CronError> {
        let mut jobs = lock(&self.jobs);
        let i = jobs
            .iter()
            .position(|j| j.id == id)
            .ok_or(CronError::NotFound)?;
        let job = jobs.remove(i);
        if let Err(e) = self.save(&jobs) {
            jobs.insert(i, job);
            return Err(e);
        }
        drop(jobs);
        self.changed.notify_one();
        Ok(job)
    }

    /// Enables/disables or renames a job.
    pub fn update(&self, id: &str, patch: &Value, now: u64) -> Result<Job, CronError> {
        let mut jobs = lock(&self.jobs);
        let j = jobs
            .iter_mut()
            .find(|j| j.id == id)
            .ok_or(CronError::NotFound)?;
        let before = j.clone();
        if let Some(e) = patch["enabled"].as_bool() {
            j.enabled = e;
        }
        if let Some(n) = patch["name"].as_str() {
            j.name = n.to_owned();
        }
        if !patch["schedule"].is_null() {
            let next = next_run(&patch["schedule"], now, None).map_err(CronError::Invalid)?;
            j.schedule = patch["schedule"].clone();
            j.state["nextRunAtMs"] = json!(next);
        }
        j.updated_at_ms = now;
        let after = j.clone();
        if let Err(e) = self.save(&jobs) {
            if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
                *j = before;
            }
            return Err(e);
        }
        drop(jobs);
        self.changed.notify_one();
        Ok(after)
    }

    /// The job's runs, newest first.
    pub fn runs(&self, id: &str) -> Result<Vec<Value>, CronError> {
        let jobs = lock(&self.jobs);
        let j = jobs
            .iter()
            .find(|j| j.id == id)
            .ok_or(CronError::NotFound)?;
        Ok(j.runs.iter().rev().cloned().collect())
    }

    fn record(&self, id: &str, run: Value, next: Option<u64>, now: u64) {
        let mut jobs = lock(&self.jobs);
        if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
            j.state["lastRunAtMs"] = json!(now);
            j.state["lastStatus"] = run["status"].clone();
            j.state["nextRunAtMs"] = json!(next);
            if next.is_none() {
                j.enabled = false;
            }
            j.runs.push(run);
            let over = j.runs.len().saturating_sub(MAX_RUNS);
            j.runs.drain(..over);
        }
        if let Err(e) = self.save(&jobs) {
            tracing::warn!(error = %e, "cron run not recorded on disk");
        }
    }

    /// Marks a job started (its next run computed now, so a crash mid-run does not repeat it).
    fn advance(&self, id: &str, now: u64) -> Option<Job> {
        let mut jobs = lock(&self.jobs);
        let j = jobs.iter_mut().find(|j| j.id == id)?;
        let last = Some(now);
        let next = next_run(&j.schedule, now, last).ok().flatten();
        j.state["nextRunAtMs"] = json!(next);
        j.state["lastRunAtMs"] = json!(now);
        let job = j.clone();
        if let Err(e) = self.save(&jobs) {
            tracing::warn!(error = %e, "cron state not saved");
        }
        Some(job)
    }
}

fn target_session(job: &Job) -> String {
    match job.session_target.as_str() {
        "isolated" => format!("agent:main:cron:{}", job.id),
        "current" => job
            .session_key
            .as_deref()
            .map_or_else(|| "agent:main:main".into(), crate::methods::session_key),
        t => t
            .strip_prefix("session:")
            .map_or_else(|| "agent:main:main".into(), crate::methods::session_key),
    }
}

/// Runs job `id` now (the scheduler, or `cron.run`); its outcome is recorded when it ends.
pub async fn fire(agent: &Arc<Agent>, id: &str) -> Result<String, CronError> {
    let now = pincer_os::now_ms();
    let cron = agent.cron();
    let job = cron.advance(id, now).ok_or(CronError::NotFound)?;
    let run_id = format!("cron:{}:{now}", job.id);
    let emit = |action: &str, extra: Value| {
        let mut p = json!({ "jobId": job.id, "action": action, "runId": run_id });
        if let (Value::Object(p), Value::Object(e)) = (&mut p, extra) {
            p.extend(e);
        }
        agent.host().emit("cron", &p, Audience::Readers);
    };
    emit("started", json!({ "runAtMs": now }));
    let next = job.state["nextRunAtMs"].as_u64();
    if job.payload["kind"] == "systemEvent" {
        let text = job.payload["text"].as_str().unwrap_or("").to_owned();
        agent.queue_system_event(&target_session(&job), &text);
        let run = json!({ "ts": now, "jobId": job.id, "runId": run_id, "status": "ok", "summary": "system event queued", "durationMs": 0 });
        cron.record(&job.id, run, next, now);
        emit("finished", json!({ "status": "ok", "nextRunAtMs": next }));
        return Ok(run_id);
    }
    let message = job.payload["message"].as_str().unwrap_or("").to_owned();
    let started = agent
        .start(StartRun {
            session_key: target_session(&job),
            message,
            images: vec![],
            run_id: run_id.clone(),
            origin: None,
            created_via: "cron".into(),
            model: job.payload["model"].as_str().map(str::to_owned),
        })
        .await;
    let agent = agent.clone();
    let rid = run_id.clone();
    tokio::spawn(async move {
        let outcome = match started {
            Ok(Started::Started { .. } | Started::InFlight) => {
                agent.wait(&rid, Duration::from_secs(3600)).await
            }
            Ok(Started::Finished(o)) => Some(o),
            Err(e) => {
                tracing::warn!(error = %e, "cron run did not start");
                None
            }
        };
        let (status, summary) = match &outcome {
            Some(o) if o.status == "ok" => ("ok", o.text.chars().take(200).collect::<String>()),
            Some(o) => ("error", o.error.clone().unwrap_or_else(|| o.status.into())),
            None => ("error", "the run did not start".into()),
        };
        let ended = pincer_os::now_ms();
        let run = json!({ "ts": now, "jobId": job.id, "runId": rid, "status": status, "summary": summary, "durationMs": ended.saturating_sub(now) });
        agent.cron().record(&job.id, run, next, ended);
        agent.host().emit(
            "cron",
            &json!({ "jobId": job.id, "action": "finished", "runId": rid, "status": status, "nextRunAtMs": next }),
            Audience::Readers,
        );
    });
    Ok(run_id)
}

/// The scheduler: until the gateway stops, sleeps until the soonest job is due (or the jobs
/// change) and fires what is due.
pub async fn schedule(agent: Arc<Agent>) {
    loop {
        let now = pincer_os::now_ms();
        let due: Vec<String> = agent
            .cron()
            .list()
            .into_iter()
            .filter(|j| j.enabled && j.state["nextRunAtMs"].as_u64().is_some_and(|t| t <= now))
            .map(|j| j.id)
            .collect();
        for id in due {
            if let Err(e) = fire(&agent, &id).await {
                tracing::warn!(job = %id, error = %e, "cron job failed to fire");
            }
        }
        let wait = agent
            .cron()
            .next_wake()
            .map_or(Duration::from_secs(60), |t| {
                Duration::from_millis(t.saturating_sub(pincer_os::now_ms()))
            })
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = agent.cron().changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_give_their_next_run() {
        let every = json!({ "kind": "every", "everyMs": 1000, "anchorMs": 10_000 });
        assert_eq!(next_run(&every, 10_500, None), Ok(Some(11_000)));
        assert_eq!(next_run(&every, 12_000, None), Ok(Some(13_000)));
        let at = json!({ "kind": "at", "at": "2026-12-01T12:31:00Z" });
        assert_eq!(next_run(&at, 0, None), Ok(Some(1_796_128_260_000)));
        assert_eq!(next_run(&at, 0, Some(5)), Ok(None));
        assert!(
            next_run(&json!({ "kind": "cron", "expr": "* * * * *" }), 0, None)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(next_run(&json!({ "kind": "every", "everyMs": 5 }), 0, None).is_err());
    }
}
