//! JSON Schema generation from the Rust types. The committed copies live in `protocol/schema/`;
//! `cargo test -p pincer-protocol --features schema` fails when they are stale, and
//! `PINCER_BLESS=1` rewrites them.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

use crate::agent::*;
use crate::connect::{
    ChallengePayload, ConnectParams, HelloOk, PresencePayload, ShutdownPayload, TickPayload,
};
use crate::error::ErrorShape;
use crate::frames::{EventFrame, RequestFrame, ResponseFrame};
use crate::methods::*;

fn gen<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft2020_12();
    let generator = settings.into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// Every schema as `(relative path, schema)`, in a stable order.
pub fn all() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = vec![
        ("frames/request.json".into(), gen::<RequestFrame>()),
        ("frames/response.json".into(), gen::<ResponseFrame>()),
        ("frames/event.json".into(), gen::<EventFrame>()),
        ("frames/error.json".into(), gen::<ErrorShape>()),
        (
            "events/connect.challenge.json".into(),
            gen::<ChallengePayload>(),
        ),
        ("events/tick.json".into(), gen::<TickPayload>()),
        ("events/presence.json".into(), gen::<PresencePayload>()),
        ("events/health.json".into(), gen::<HealthSummary>()),
        ("events/shutdown.json".into(), gen::<ShutdownPayload>()),
        (
            "events/node.invoke.request.json".into(),
            gen::<NodeInvokeRequest>(),
        ),
        (
            "events/node.invoke.cancel.json".into(),
            gen::<NodeInvokeCancel>(),
        ),
    ];
    let mut method = |name: &str, params: Value, result: Value| {
        out.push((format!("methods/{name}.params.json"), params));
        out.push((format!("methods/{name}.result.json"), result));
    };
    method("connect", gen::<ConnectParams>(), gen::<HelloOk>());
    // The agent methods: typed params; results are open objects (their shapes are in
    // `pincer_agent::methods` and pinned by gateway/tests/agent.rs and the reference tests).
    let open = gen::<OpenObject>;
    method("chat.send", gen::<ChatSendParams>(), open());
    method("chat.history", gen::<ChatHistoryParams>(), open());
    method("chat.startup", gen::<ChatHistoryParams>(), open());
    method("chat.abort", gen::<ChatAbortParams>(), open());
    method("chat.inject", gen::<ChatInjectParams>(), open());
    method("agent", gen::<AgentParams>(), open());
    method("agent.wait", gen::<AgentWaitParams>(), open());
    method("agent.identity.get", open(), open());
    method("sessions.list", gen::<SessionsListParams>(), open());
    method("sessions.preview", gen::<SessionsPreviewParams>(), open());
    method("sessions.resolve", gen::<SessionKeyParams>(), open());
    method("sessions.patch", gen::<SessionKeyParams>(), open());
    method("sessions.reset", gen::<SessionKeyParams>(), open());
    method("sessions.delete", gen::<SessionKeyParams>(), open());
    method("models.list", open(), open());
    method("wake", gen::<WakeParams>(), open());
    method("send", gen::<SendParams>(), open());
    for m in ["cron.status", "cron.list"] {
        method(m, open(), open());
    }
    method("cron.add", gen::<CronAddParams>(), open());
    for m in [
        "cron.get",
        "cron.update",
        "cron.remove",
        "cron.run",
        "cron.runs",
    ] {
        method(m, gen::<CronJobParams>(), open());
    }
    // What the official Control UI reads on load (pincer_agent::control_ui and the gateway's
    // control_ui): open params, open results, arrays for the approval lists.
    for m in [
        "agents.list",
        "models.authStatus",
        "chat.metadata",
        "sessions.describe",
        "sessions.branches.list",
        "sessions.companion.state",
        "progressCard.get",
        "tasks.list",
        "sessions.subscribe",
        "sessions.unsubscribe",
        "sessions.messages.subscribe",
        "sessions.messages.unsubscribe",
        "sessions.observer.visibility",
        "update.status",
        "question.list",
        "talk.catalog",
        "system.info",
        "environments.list",
        "channels.pairing.list",
        "channels.pairing.approve",
        "channels.pairing.dismiss",
    ] {
        method(m, open(), open());
    }
    for m in [
        "exec.approval.list",
        "plugin.approval.list",
        "openclaw.approval.list",
    ] {
        method(m, open(), gen::<Vec<Value>>());
    }
    method("health", gen::<HealthParams>(), gen::<HealthSummary>());
    method("status", gen::<EmptyParams>(), gen::<StatusSummary>());
    method(
        "system-presence",
        gen::<EmptyParams>(),
        gen::<SystemPresenceResult>(),
    );
    method(
        "last-heartbeat",
        gen::<EmptyParams>(),
        gen::<Option<Value>>(),
    );
    method("config.get", gen::<EmptyParams>(), gen::<ConfigGetResult>());
    method(
        "channels.status",
        gen::<ChannelsStatusParams>(),
        gen::<ChannelsStatusResult>(),
    );
    method(
        "system-event",
        gen::<SystemEventParams>(),
        gen::<SystemEventResult>(),
    );
    method(
        "device.pair.list",
        gen::<EmptyParams>(),
        gen::<DevicePairListResult>(),
    );
    method(
        "device.pair.approve",
        gen::<RequestIdParams>(),
        gen::<DevicePairApproveResult>(),
    );
    method(
        "device.pair.reject",
        gen::<RequestIdParams>(),
        gen::<DevicePairRejectResult>(),
    );
    method(
        "device.pair.remove",
        gen::<DeviceIdParams>(),
        gen::<DeviceIdResult>(),
    );
    method(
        "device.pair.setupCode",
        gen::<SetupCodeParams>(),
        gen::<SetupCodeResult>(),
    );
    method(
        "device.token.rotate",
        gen::<TokenRotateParams>(),
        gen::<TokenRotateResult>(),
    );
    method(
        "device.token.revoke",
        gen::<TokenRevokeParams>(),
        gen::<TokenRevokeResult>(),
    );
    method("node.list", gen::<EmptyParams>(), gen::<NodeListResult>());
    method(
        "node.describe",
        gen::<NodeIdParams>(),
        gen::<NodeListNode>(),
    );
    method(
        "node.invoke",
        gen::<NodeInvokeParams>(),
        gen::<NodeInvokeResult>(),
    );
    method(
        "node.invoke.result",
        gen::<NodeInvokeResultParams>(),
        gen::<Value>(),
    );
    method("node.event", gen::<NodeEventParams>(), gen::<Value>());
    method(
        "node.pair.list",
        gen::<EmptyParams>(),
        gen::<NodePairListResult>(),
    );
    method(
        "node.pair.approve",
        gen::<RequestIdParams>(),
        gen::<Value>(),
    );
    method("node.pair.reject", gen::<RequestIdParams>(), gen::<Value>());
    for m in [
        "node.runnerInventory.update",
        "node.skills.update",
        "node.pluginTools.update",
        "skills.bins",
    ] {
        method(m, gen::<OpenObject>(), gen::<Value>());
    }
    out
}
