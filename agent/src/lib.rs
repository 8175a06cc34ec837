//! # pincer-agent
//!
//! The agent runtime pincer-gateway hosts: a run takes a user turn, calls a model over a
//! streaming provider dialect, runs the tools the model asks for (which reach nodes through the
//! host), and keeps the session's transcript on disk.
//!
//! **Owns:** runs ([`runtime`], [`run`], [`events`]), provider dialects and their streams
//! ([`provider`], [`sse`], [`http`]), tools ([`tools`]), the system prompt ([`prompt`]),
//! sessions and transcripts ([`store`], [`transcript`]), scheduled turns ([`cron`]) and the
//! wire methods ([`methods`]).
//!
//! **Must not touch:** sockets to clients, the gateway's registry or trust store. What the
//! agent needs from its host (invoking a node command, sending events to clients) comes through
//! narrow traits the gateway implements.

#![warn(missing_docs)]

pub mod config;
pub mod control_ui;
pub mod cron;
pub mod events;
pub mod host;
pub mod http;
pub mod methods;
pub mod prompt;
pub mod provider;
pub mod run;
pub mod runtime;
pub mod sse;
pub mod store;
pub mod tools;
pub mod transcript;
pub mod watch;
