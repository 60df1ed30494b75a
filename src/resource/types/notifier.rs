//! `Notifier`: who is told when runs fail, recover or exceed a soft limit, when a
//! schedule misses a slot or the git source cannot sync, and through which channels.
//!
//! Shaped like an Alertmanager receiver: a notifier names its events and channels; the
//! pipelines it covers are those its `selector` matches plus those naming it in their
//! `spec.notify`. Credentials are never part of the spec: every password, webhook URL
//! carrying a token and signing key is a [`SecretKeyRef`] to a Secret.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a notifier.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "Notifier",
    namespaced,
    status = "NotifierStatus",
    shortname = "ntf"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifierSpec {
    /// What is notified; default `[RunFailed, RunRecovered]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotifyEvent>,
    /// Pipelines covered by their labels (`{}` covers every pipeline of the namespace).
    /// Absent: only the pipelines naming this notifier in `spec.notify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Mail through an SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    /// A Microsoft Teams incoming webhook (an Adaptive Card is posted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<SecretUrlChannel>,
    /// A Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SecretUrlChannel>,
    /// Any HTTP endpoint: a JSON document, signed with HMAC-SHA256 when a key is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
}

impl NotifierSpec {
    /// The events notified, defaults applied.
    pub fn effective_events(&self) -> Vec<NotifyEvent> {
        if self.events.is_empty() {
            vec![NotifyEvent::RunFailed, NotifyEvent::RunRecovered]
        } else {
            self.events.clone()
        }
    }

    /// True when it notifies `event`.
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.effective_events().contains(&event)
    }

    /// True when a pipeline with `labels`, whose `spec.notify` lists `named`, is
    /// covered by the notifier `name`.
    pub fn covers(&self, name: &str, labels: &BTreeMap<String, String>, named: &[String]) -> bool {
        named.iter().any(|n| n == name)
            || self.selector.as_ref().is_some_and(|selector| {
                selector
                    .match_labels
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value))
            })
    }
}

/// Something worth telling people about.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum NotifyEvent {
    /// A run ended `Failed` (attempts exhausted, timeout, OOM, …).
    RunFailed,
    /// A run succeeded and the previous finished run of its pipeline had failed.
    RunRecovered,
    /// A run used more memory or CPU than its pipeline's soft limit.
    SoftLimitExceeded,
    /// A schedule slot was missed (operator down, startingDeadline passed).
    ScheduleMissed,
    /// The git source could not fetch or apply its branch.
    SyncFailed,
}

impl NotifyEvent {
    /// The name as written in `events:`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::RunFailed => "RunFailed",
            NotifyEvent::RunRecovered => "RunRecovered",
            NotifyEvent::SoftLimitExceeded => "SoftLimitExceeded",
            NotifyEvent::ScheduleMissed => "ScheduleMissed",
            NotifyEvent::SyncFailed => "SyncFailed",
        }
    }
}

/// Labels a pipeline must carry, as in Kubernetes' `matchLabels`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Every pair must be among the pipeline's labels; empty selects every pipeline.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// One key of a Secret in the notifier's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within it.
    pub key: String,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption (a relay on a trusted network); no password is sent over it.
    None,
}

impl SmtpTls {
    /// The usual port of the mode.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Mail through an SMTP server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailChannel {
    /// SMTP server host name (also the name its certificate must carry).
    pub host: String,
    /// Port; default by `tls`: 587, 465 or 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `StartTls` (default), `Tls` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    /// Sender address (`Flotilla <flotilla@example.com>`).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP user name, when the server wants one (or `usernameSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SMTP user name from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,
    /// SMTP password from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// A PEM CA certificate (or bundle) from a Secret, trusted beside the built-in web
    /// roots and the operator's `SSL_CERT_FILE`: for a server with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// A channel whose whole URL is a credential (Teams, Slack incoming webhooks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretUrlChannel {
    /// The incoming-webhook URL, from a Secret.
    pub url_secret_ref: SecretKeyRef,
}

/// A generic HTTP endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookChannel {
    /// Endpoint the JSON document is POSTed to (`http://` or `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The endpoint from a Secret instead, when the URL itself carries a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// HMAC-SHA256 key: requests carry `X-Flotilla-Timestamp: <unix seconds>` and
    /// `X-Flotilla-Signature: sha256=<hex>` over `<timestamp>.<body>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_secret_ref: Option<SecretKeyRef>,
}

/// Observed state of a notifier. Deliveries are recorded as events on the objects they
/// are about (`NotificationSent`, `NotificationFailed`), not here; the conditions are
/// reserved for a readiness check of the channels, which no controller writes yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifierStatus {
    /// Conditions such as `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<super::Condition>,
}

/// A channel of a notifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    /// `email`.
    Email,
    /// `teams`.
    Teams,
    /// `slack`.
    Slack,
    /// `webhook`.
    Webhook,
}

impl ChannelKind {
    /// The field name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Teams => "teams",
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl NotifierSpec {
    /// The channels set, in a stable order.
    pub fn channels(&self) -> Vec<ChannelKind> {
        let mut out = Vec::new();
        if self.email.is_some() {
            out.push(ChannelKind::Email);
        }
        if self.teams.is_some() {
            out.push(ChannelKind::Teams);
        }
        if self.slack.is_some() {
            out.push(ChannelKind::Slack);
        }
        if self.webhook.is_some() {
            out.push(ChannelKind::Webhook);
        }
        out
    }

    /// Every Secret key the notifier reads.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretKeyRef)> {
        let mut out = Vec::new();
        if let Some(email) = &self.email {
            let refs = [
                ("spec.email.usernameSecretRef", &email.username_secret_ref),
                ("spec.email.passwordSecretRef", &email.password_secret_ref),
                ("spec.email.caSecretRef", &email.ca_secret_ref),
            ];
            out.extend(
                refs.into_iter()
                    .filter_map(|(p, r)| r.as_ref().map(|r| (p, r))),
            );
        }
        if let Some(teams) = &self.teams {
            out.push(("spec.teams.urlSecretRef", &teams.url_secret_ref));
        }
        if let Some(slack) = &self.slack {
            out.push(("spec.slack.urlSecretRef", &slack.url_secret_ref));
        }
        if let Some(webhook) = &self.webhook {
            if let Some(r) = &webhook.url_secret_ref {
                out.push(("spec.webhook.urlSecretRef", r));
            }
            if let Some(r) = &webhook.signing_key_secret_ref {
                out.push(("spec.webhook.signingKeySecretRef", r));
            }
        }
        out
    }
}
