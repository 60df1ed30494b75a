//! Push webhook deliveries: who may send them and which ones mean "sync now".
//!
//! Three forms are accepted, all checked against `WEBHOOK_SECRET` in constant time:
//! GitHub (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`), the same
//! HMAC under `X-Flotilla-Signature` for any other sender, and GitLab
//! (`X-Gitlab-Token: <secret>`). Only a verified delivery is looked at: a ping answers,
//! a push to the followed branch syncs, anything else is acknowledged and ignored.
//! Nothing here knows HTTP types; `server::hooks` passes the header values in.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shared secret of push webhooks (`WEBHOOK_SECRET`); never printed.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Wraps a secret; an empty one is refused.
    pub fn new(secret: impl Into<String>) -> Option<Self> {
        let secret = secret.into();
        (!secret.is_empty()).then_some(Self(secret))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        <HmacSha256 as KeyInit>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The parts of a delivery that matter, as received.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delivery<'a> {
    /// `X-Hub-Signature-256`.
    pub github_signature: Option<&'a str>,
    /// `X-Flotilla-Signature`.
    pub generic_signature: Option<&'a str>,
    /// `X-Gitlab-Token`.
    pub gitlab_token: Option<&'a str>,
    /// `X-GitHub-Event` (`push`, `ping`, …).
    pub github_event: Option<&'a str>,
    /// `X-Gitlab-Event` (`Push Hook`, `Tag Push Hook`, …).
    pub gitlab_event: Option<&'a str>,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
}

/// Why a delivery is refused (answered 401; nothing happens).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// No secret is configured, so no delivery can be verified.
    #[error("push webhooks are disabled: the server has no WEBHOOK_SECRET")]
    NoSecret,
    /// None of the signature headers is present.
    #[error(
        "missing signature: send X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab) or X-Flotilla-Signature: sha256=<hex HMAC-SHA256 of the body>"
    )]
    MissingSignature,
    /// A signature is present but wrong.
    #[error("the signature does not match the body and WEBHOOK_SECRET")]
    BadSignature,
}

/// What a verified delivery asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushVerdict {
    /// A ping (GitHub sends one when the hook is created).
    Ping,
    /// A push to the followed branch (or a generic delivery naming no ref): sync.
    Sync {
        /// The pushed head, when the payload names it.
        after: Option<String>,
    },
    /// Anything else; the message says why it was ignored.
    Ignored(String),
}

/// Checks the delivery's signature against `secret` in constant time.
pub fn verify(
    secret: Option<&WebhookSecret>,
    delivery: &Delivery<'_>,
) -> Result<(), DeliveryError> {
    let secret = secret.ok_or(DeliveryError::NoSecret)?;
    let signature = delivery
        .github_signature
        .or(delivery.generic_signature)
        .map(str::trim);
    if let Some(signature) = signature {
        let hex_digest = signature
            .strip_prefix("sha256=")
            .ok_or(DeliveryError::BadSignature)?;
        let expected = hex::decode(hex_digest).map_err(|_| DeliveryError::BadSignature)?;
        let mut mac = secret.mac();
        mac.update(delivery.body);
        return mac
            .verify_slice(&expected)
            .map_err(|_| DeliveryError::BadSignature);
    }
    if let Some(token) = delivery.gitlab_token {
        return if equal_in_constant_time(token.as_bytes(), secret.0.as_bytes()) {
            Ok(())
        } else {
            Err(DeliveryError::BadSignature)
        };
    }
    Err(DeliveryError::MissingSignature)
}

/// Decides what a verified delivery means for a source following `branch`.
pub fn classify(branch: &str, delivery: &Delivery<'_>) -> PushVerdict {
    match delivery.github_event {
        Some("ping") => return PushVerdict::Ping,
        Some("push") | None => {}
        Some(other) => return PushVerdict::Ignored(format!("ignored: GitHub event {other}")),
    }
    if let Some(event) = delivery.gitlab_event
        && event != "Push Hook"
        && event != "System Hook"
    {
        return PushVerdict::Ignored(format!("ignored: GitLab event {event}"));
    }
    let payload = parse_payload(delivery.body);
    let git_ref = payload.as_ref().and_then(|p| p["ref"].as_str());
    let after = payload
        .as_ref()
        .and_then(|p| p["after"].as_str())
        .map(str::to_owned);
    match git_ref {
        Some(git_ref) if git_ref == format!("refs/heads/{branch}") => PushVerdict::Sync { after },
        Some(git_ref) => match git_ref.strip_prefix("refs/heads/") {
            Some(other) => PushVerdict::Ignored(format!("ignored: push to {other}")),
            None => PushVerdict::Ignored(format!(
                "ignored: push to {}",
                git_ref
                    .strip_prefix("refs/tags/")
                    .map_or_else(|| git_ref.to_owned(), |tag| format!("tag {tag}"))
            )),
        },
        // Generic senders may post an empty body (or no ref) to just ask for a sync;
        // GitHub and GitLab pushes always carry a ref.
        None if delivery.github_event.is_none() && delivery.gitlab_event.is_none() => {
            PushVerdict::Sync { after }
        }
        None => PushVerdict::Ignored("ignored: the payload names no ref".into()),
    }
}

/// JSON, or GitHub's form encoding (`payload=<url-encoded JSON>`).
fn parse_payload(body: &[u8]) -> Option<Value> {
    if let Ok(value) = serde_json::from_slice(body) {
        return Some(value);
    }
    let text = std::str::from_utf8(body).ok()?;
    let encoded = text
        .split('&')
        .find_map(|pair| pair.strip_prefix("payload="))?;
    serde_json::from_str(&percent_decode(encoded)?).ok()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Compares two secrets in constant time: both are MACed under a random per-call key
/// and the tags compared with [`Mac::verify_slice`], so neither content nor length
/// leaks through timing.
pub fn equal_in_constant_time(given: &[u8], expected: &[u8]) -> bool {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let tag = |data: &[u8]| {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(data);
        mac
    };
    let expected_tag = tag(expected).finalize().into_bytes();
    tag(given).verify_slice(&expected_tag).is_ok()
}

/// `sha256=<hex>` of `body` under `secret`: what a sender puts in
/// `X-Hub-Signature-256` or `X-Flotilla-Signature`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
