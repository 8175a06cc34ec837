//! Roles, operator scopes and which method needs which (reference §4.1–4.2).

/// Operator scope that allows every method (and implies `operator.read` and `operator.write`).
pub const ADMIN: &str = "operator.admin";
/// Operator scope for read-only methods (`status`, `node.list`, …).
pub const READ: &str = "operator.read";
/// Operator scope for methods that act (`node.invoke`, `chat.send`, …); implies `operator.read`.
pub const WRITE: &str = "operator.write";
/// Operator scope for exec and plugin approvals (`exec.approval.*`, `plugin.approval.*`).
pub const APPROVALS: &str = "operator.approvals";
/// Operator scope for device and node pairing (`device.pair.*`, `device.token.*`, `node.pair.*`).
pub const PAIRING: &str = "operator.pairing";
/// Operator scope to read Talk secrets (`talk.config` with `includeSecrets`).
pub const TALK_SECRETS: &str = "operator.talk.secrets";

/// The six scopes the OpenClaw CLI asks for.
pub const ALL_OPERATOR: [&str; 6] = [ADMIN, READ, WRITE, APPROVALS, PAIRING, TALK_SECRETS];

/// The two roles a connection can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `"operator"` (the default when `connect.role` is absent): calls methods, holds scopes.
    Operator,
    /// `"node"`: serves `node.invoke.request`s; only node-role methods, no scopes.
    Node,
}

impl Role {
    /// The role named by its wire string; `None` for anything else.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "node" => Some(Role::Node),
            _ => None,
        }
    }
    /// The wire string (`"operator"` or `"node"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }
}

/// What a method requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Any authenticated connection (`health`).
    Any,
    /// Only `role: "node"` connections.
    Node,
    /// An operator holding this scope (`operator.admin` satisfies everything; `operator.write`
    /// satisfies `operator.read`).
    Operator(&'static str),
}

const NODE_METHODS: &[&str] = &[
    "node.invoke.result",
    "node.event",
    "node.pending.drain",
    "node.pending.pull",
    "node.pending.ack",
    "node.canvas.capability.refresh",
    "skills.bins",
    "node.invoke.progress",
    "node.pluginTools.update",
    "node.skills.update",
    "node.pluginSurface.refresh",
    "node.runnerInventory.update",
];

const READ_METHODS: &[&str] = &[
    "status",
    "logs.tail",
    "system-presence",
    "last-heartbeat",
    "gateway.identity.get",
    "usage.status",
    "usage.cost",
    "doctor.memory.status",
    "doctor.memory.dreamDiary",
    "channels.status",
    "tts.status",
    "tts.providers",
    "talk.config",
    "voicewake.get",
    "config.get",
    "config.schema.lookup",
    "commands.list",
    "models.list",
    "tools.catalog",
    "tools.effective",
    "agents.list",
    "agent.identity.get",
    "skills.status",
    "skills.search",
    "skills.detail",
    "agents.files.list",
    "agents.files.get",
    "sessions.list",
    "sessions.preview",
    "sessions.compaction.list",
    "sessions.compaction.get",
    "sessions.subscribe",
    "sessions.unsubscribe",
    "sessions.messages.subscribe",
    "sessions.messages.unsubscribe",
    "sessions.get",
    "sessions.resolve",
    "sessions.usage",
    "sessions.usage.timeseries",
    "sessions.usage.logs",
    "chat.history",
    "chat.startup",
    "chat.metadata",
    "chat.message.get",
    "sessions.describe",
    "cron.list",
    "cron.status",
    "cron.runs",
    "cron.get",
    "node.list",
    "node.describe",
    "system.info",
    "environments.list",
];

const WRITE_METHODS: &[&str] = &[
    "wake",
    "tts.enable",
    "tts.disable",
    "tts.convert",
    "tts.setProvider",
    "talk.speak",
    "talk.mode",
    "voicewake.set",
    "sessions.create",
    "sessions.send",
    "sessions.abort",
    "sessions.compaction.branch",
    "sessions.steer",
    "chat.send",
    "chat.abort",
    "send",
    "poll",
    "message.action",
    "agent",
    "agent.wait",
    "node.invoke",
    "node.pending.enqueue",
    "push.test",
];

const PAIRING_METHODS: &[&str] = &[
    "channels.pairing.list",
    "channels.pairing.approve",
    "channels.pairing.dismiss",
    "node.pair.request",
    "node.pair.list",
    "node.pair.approve",
    "node.pair.reject",
    "node.pair.verify",
    "node.pair.remove",
    "node.rename",
    "device.pair.list",
    "device.pair.approve",
    "device.pair.reject",
    "device.pair.remove",
    "device.token.rotate",
    "device.token.revoke",
];

const APPROVAL_METHODS: &[&str] = &[
    "exec.approval.get",
    "exec.approval.list",
    "exec.approval.request",
    "exec.approval.waitDecision",
    "exec.approval.resolve",
    "plugin.approval.list",
    "plugin.approval.request",
    "plugin.approval.waitDecision",
    "plugin.approval.resolve",
];

/// The requirement of `method`; unclassified methods need `operator.admin`.
pub fn requirement(method: &str) -> Requirement {
    if method == "health" {
        Requirement::Any
    } else if NODE_METHODS.contains(&method) {
        Requirement::Node
    } else if READ_METHODS.contains(&method) {
        Requirement::Operator(READ)
    } else if WRITE_METHODS.contains(&method) {
        Requirement::Operator(WRITE)
    } else if PAIRING_METHODS.contains(&method) {
        Requirement::Operator(PAIRING)
    } else if APPROVAL_METHODS.contains(&method) {
        Requirement::Operator(APPROVALS)
    } else {
        Requirement::Operator(ADMIN)
    }
}

/// Whether `held` scopes satisfy `needed`.
pub fn satisfies<S: AsRef<str>>(held: &[S], needed: &str) -> bool {
    held.iter().any(|h| {
        let h = h.as_ref();
        h == ADMIN || h == needed || (needed == READ && h == WRITE)
    })
}

/// Why a call was refused by [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The method belongs to the other role.
    Role(Role),
    /// The operator lacks this scope.
    Scope(&'static str),
}

/// Applies the role split and the scope table.
pub fn authorize<S: AsRef<str>>(role: Role, scopes: &[S], method: &str) -> Result<(), Denied> {
    match (requirement(method), role) {
        (Requirement::Any, _) => Ok(()),
        (Requirement::Node, Role::Node) => Ok(()),
        (Requirement::Node, r) => Err(Denied::Role(r)),
        (Requirement::Operator(_), Role::Node) => Err(Denied::Role(Role::Node)),
        (Requirement::Operator(s), Role::Operator) => {
            if satisfies(scopes, s) {
                Ok(())
            } else {
                Err(Denied::Scope(s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_table() {
        assert_eq!(authorize::<&str>(Role::Node, &[], "health"), Ok(()));
        assert_eq!(authorize::<&str>(Role::Operator, &[], "health"), Ok(()));
        assert_eq!(authorize(Role::Operator, &[WRITE], "status"), Ok(()));
        assert_eq!(
            authorize(Role::Operator, &[READ], "wake"),
            Err(Denied::Scope(WRITE))
        );
        assert_eq!(authorize(Role::Operator, &[ADMIN], "system-event"), Ok(()));
        assert_eq!(
            authorize(Role::Operator, &[READ, WRITE], "system-event"),
            Err(Denied::Scope(ADMIN))
        );
        assert_eq!(
            authorize(Role::Operator, &[ADMIN], "node.event"),
            Err(Denied::Role(Role::Operator))
        );
        assert_eq!(
            authorize::<&str>(Role::Node, &[], "status"),
            Err(Denied::Role(Role::Node))
        );
        assert_eq!(
            authorize(Role::Operator, &[PAIRING], "device.pair.list"),
            Ok(())
        );
    }
}
