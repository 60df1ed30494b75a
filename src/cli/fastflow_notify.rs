//! Fast-Flow's mail and Teams settings as a default Notifier for every pipeline.
//!
//! `SMTP_HOST`, `SMTP_PORT` (587), `SMTP_USER`, `SMTP_PASSWORD`, `SMTP_FROM` and
//! `EMAIL_RECIPIENTS` (comma-separated) make an `email` channel, `TEAMS_WEBHOOK_URL` a
//! `teams` channel, unless `EMAIL_ENABLED` / `TEAMS_ENABLED` say `false`. The notifier
//! `fastflow-default` (namespace `default`, every pipeline, Fast-Flow's events: failed
//! runs and soft limits) is applied at start under the field manager `env:fastflow`, so
//! unsetting the variables removes it. The password and the webhook URL go into the
//! Secret `fastflow-notifications`, encrypted like any other; never into the notifier.

use serde_json::{Value, json};

use crate::resource::kind::Kind;
use crate::resource::validate::envelope;
use crate::resource::validate_notifier::{check_http_url, check_mailbox};

/// Field manager of the applied set.
pub const MANAGER: &str = "env:fastflow";
/// Name of the notifier made.
pub const NOTIFIER: &str = "fastflow-default";
/// Name of the Secret holding its credentials.
pub const SECRET: &str = "fastflow-notifications";

/// The documents (a Secret and a Notifier) the environment asks for; none when it
/// configures neither mail nor Teams. An error names the variable and what to write.
pub fn documents(env: impl Fn(&str) -> Option<String>) -> Result<Vec<Value>, String> {
    let set = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let enabled = |name: &str| -> Result<bool, String> {
        match set(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(format!("{name}={other:?} is neither true nor false")),
        }
    };
    let mut spec = json!({
        "events": ["RunFailed", "SoftLimitExceeded"],
        "selector": { "matchLabels": {} },
    });
    let mut secret = serde_json::Map::new();
    if let Some(host) = set("SMTP_HOST")
        && enabled("EMAIL_ENABLED")?
    {
        let port: u16 = match set("SMTP_PORT") {
            None => 587,
            Some(text) => text
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("SMTP_PORT={text:?} is not a port number"))?,
        };
        let user = set("SMTP_USER");
        let from = set("SMTP_FROM").or_else(|| user.clone().filter(|u| u.contains('@')));
        let from = from.ok_or("SMTP_HOST is set but SMTP_FROM is not: set the sender address")?;
        check_mailbox(&from).map_err(|e| format!("SMTP_FROM: {e}"))?;
        let to: Vec<String> = set("EMAIL_RECIPIENTS")
            .unwrap_or_default()
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if to.is_empty() {
            return Err(
                "SMTP_HOST is set but EMAIL_RECIPIENTS is empty: list the addresses to mail, comma-separated"
                    .into(),
            );
        }
        for address in &to {
            check_mailbox(address).map_err(|e| format!("EMAIL_RECIPIENTS: {e}"))?;
        }
        // Fast-Flow's client speaks STARTTLS, except on SMTPS's port.
        let tls = if port == 465 { "Tls" } else { "StartTls" };
        let mut email = json!({ "host": host, "port": port, "tls": tls, "from": from, "to": to });
        match (user, set("SMTP_PASSWORD")) {
            (Some(user), Some(password)) => {
                email["username"] = json!(user);
                email["passwordSecretRef"] = json!({ "name": SECRET, "key": "SMTP_PASSWORD" });
                secret.insert("SMTP_PASSWORD".into(), json!(password));
            }
            (None, None) => {}
            (Some(_), None) => return Err("SMTP_USER is set without SMTP_PASSWORD".into()),
            (None, Some(_)) => return Err("SMTP_PASSWORD is set without SMTP_USER".into()),
        }
        spec["email"] = email;
    }
    if let Some(url) = set("TEAMS_WEBHOOK_URL")
        && enabled("TEAMS_ENABLED")?
    {
        check_http_url(&url).map_err(|_| {
            "TEAMS_WEBHOOK_URL is not an https:// URL; copy the incoming webhook's URL from Teams"
                .to_owned()
        })?;
        spec["teams"] = json!({ "urlSecretRef": { "name": SECRET, "key": "TEAMS_WEBHOOK_URL" } });
        secret.insert("TEAMS_WEBHOOK_URL".into(), json!(url));
    }
    if spec.get("email").is_none() && spec.get("teams").is_none() {
        return Ok(Vec::new());
    }
    let mut documents = Vec::new();
    if !secret.is_empty() {
        documents.push(envelope(
            Kind::Secret,
            SECRET,
            json!({ "stringData": secret }),
        ));
    }
    documents.push(envelope(Kind::Notifier, NOTIFIER, spec));
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Vec<Value>, String> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        documents(|name| env.get(name).cloned())
    }

    #[test]
    fn mail_and_teams_make_a_notifier_whose_credentials_are_in_a_secret() {
        let docs = from(&[
            ("SMTP_HOST", "mail.example.com"),
            ("SMTP_USER", "flotilla@example.com"),
            ("SMTP_PASSWORD", "hunter2-long"),
            ("EMAIL_RECIPIENTS", "a@example.com, b@example.com"),
            (
                "TEAMS_WEBHOOK_URL",
                "https://example.webhook.office.com/x/y",
            ),
        ])
        .expect("valid settings");
        assert_eq!(docs.len(), 2);
        let (secret, notifier) = (&docs[0], &docs[1]);
        assert_eq!(secret["kind"], "Secret");
        assert_eq!(
            secret["spec"]["stringData"]["SMTP_PASSWORD"],
            "hunter2-long"
        );
        assert_eq!(notifier["kind"], "Notifier");
        let spec = &notifier["spec"];
        assert_eq!(spec["email"]["port"], 587);
        assert_eq!(spec["email"]["tls"], "StartTls");
        assert_eq!(spec["email"]["from"], "flotilla@example.com");
        assert_eq!(spec["email"]["to"][1], "b@example.com");
        assert_eq!(spec["selector"]["matchLabels"], json!({}));
        let text = notifier.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("office.com"),
            "{text}"
        );
    }

    #[test]
    fn nothing_configured_or_disabled_makes_nothing() {
        assert!(from(&[]).expect("empty").is_empty());
        assert!(
            from(&[("SMTP_HOST", "mail"), ("EMAIL_ENABLED", "false")])
                .expect("disabled")
                .is_empty()
        );
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (pairs, expected) in [
            (
                vec![("SMTP_HOST", "mail"), ("SMTP_FROM", "a@b.c")],
                "EMAIL_RECIPIENTS",
            ),
            (
                vec![
                    ("SMTP_HOST", "mail"),
                    ("SMTP_PORT", "smtp"),
                    ("SMTP_FROM", "a@b.c"),
                ],
                "SMTP_PORT=\"smtp\"",
            ),
            (
                vec![("SMTP_HOST", "mail"), ("EMAIL_RECIPIENTS", "x@y.z")],
                "SMTP_FROM",
            ),
            (vec![("TEAMS_WEBHOOK_URL", "teams")], "TEAMS_WEBHOOK_URL"),
            (
                vec![
                    ("TEAMS_WEBHOOK_URL", "https://x"),
                    ("TEAMS_ENABLED", "maybe"),
                ],
                "TEAMS_ENABLED",
            ),
        ] {
            let error = from(&pairs).expect_err("refused");
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
    }
}
