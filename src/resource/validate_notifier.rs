//! The semantic rules of a `Notifier` spec: at least one channel, addresses that are
//! addresses, URLs that are HTTP URLs, credentials only by Secret reference and never
//! sent in the clear. Each problem names its field and says how to fix it.

use super::types::{EmailChannel, NotifierSpec, SecretKeyRef, SmtpTls, WebhookChannel};
use super::validate::{check_dns_label, is_env_name};

/// Reports every problem of `spec` through `push(field path, message)`.
pub fn check(spec: &NotifierSpec, push: &mut dyn FnMut(&str, String)) {
    if spec.channels().is_empty() {
        push(
            "spec",
            "no channel: set at least one of email, teams, slack, webhook".to_owned(),
        );
    }
    let mut seen = Vec::new();
    for (i, event) in spec.events.iter().enumerate() {
        if seen.contains(event) {
            push(
                &format!("spec.events[{i}]"),
                format!("{} is listed twice", event.as_str()),
            );
        }
        seen.push(*event);
    }
    for (path, reference) in spec.secret_refs() {
        secret_ref(path, reference, push);
    }
    if let Some(email) = &spec.email {
        self::email(email, push);
    }
    if let Some(webhook) = &spec.webhook {
        self::webhook(webhook, push);
    }
}

fn secret_ref(path: &str, reference: &SecretKeyRef, push: &mut dyn FnMut(&str, String)) {
    if let Err(problem) = check_dns_label(&reference.name) {
        push(
            &format!("{path}.name"),
            format!("{problem} (a Secret's name)"),
        );
    }
    if !is_env_name(&reference.key) {
        push(
            &format!("{path}.key"),
            format!(
                "{:?} is not a key a Secret can hold (letters, digits, _; not starting with a digit)",
                reference.key
            ),
        );
    }
}

fn email(email: &EmailChannel, push: &mut dyn FnMut(&str, String)) {
    let host = email.host.trim();
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains("://") {
        push(
            "spec.email.host",
            format!(
                "{:?} is not a host name: write the SMTP server's name alone, e.g. smtp.example.com (the port goes in port)",
                email.host
            ),
        );
    }
    if email.port == Some(0) {
        push(
            "spec.email.port",
            "0 is not a port; omit it for the default of tls (587, 465 or 25)".to_owned(),
        );
    }
    if let Err(problem) = check_mailbox(&email.from) {
        push("spec.email.from", problem);
    }
    if email.to.is_empty() {
        push(
            "spec.email.to",
            "no recipient: list at least one address".to_owned(),
        );
    }
    for (i, to) in email.to.iter().enumerate() {
        if let Err(problem) = check_mailbox(to) {
            push(&format!("spec.email.to[{i}]"), problem);
        }
    }
    if email.username.is_some() && email.username_secret_ref.is_some() {
        push(
            "spec.email.usernameSecretRef",
            "set username or usernameSecretRef, not both".to_owned(),
        );
    }
    let has_user = email.username.is_some() || email.username_secret_ref.is_some();
    if email.password_secret_ref.is_some() && !has_user {
        push(
            "spec.email.passwordSecretRef",
            "a password needs a user name: set username or usernameSecretRef".to_owned(),
        );
    }
    if has_user && email.password_secret_ref.is_none() {
        push(
            "spec.email.passwordSecretRef",
            "a user name needs a password: set passwordSecretRef to a Secret key".to_owned(),
        );
    }
    if email.tls == Some(SmtpTls::None) && email.password_secret_ref.is_some() {
        push(
            "spec.email.tls",
            "None would send the password unencrypted: use StartTls or Tls, or drop the credentials for an open relay".to_owned(),
        );
    }
}

fn webhook(webhook: &WebhookChannel, push: &mut dyn FnMut(&str, String)) {
    match (&webhook.url, &webhook.url_secret_ref) {
        (Some(_), Some(_)) => push(
            "spec.webhook.urlSecretRef",
            "set url or urlSecretRef, not both".to_owned(),
        ),
        (None, None) => push(
            "spec.webhook.url",
            "required: the endpoint (or urlSecretRef when the URL holds a token)".to_owned(),
        ),
        (Some(url), None) => {
            if let Err(problem) = check_http_url(url) {
                push("spec.webhook.url", problem);
            }
        }
        (None, Some(_)) => {}
    }
}

/// Checks an `http://` or `https://` URL with a host.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.contains(char::is_whitespace) {
        return Err(format!("{url:?} has no host or contains spaces"));
    }
    Ok(())
}

/// Checks `user@domain` or `Name <user@domain>`.
pub fn check_mailbox(text: &str) -> Result<(), String> {
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => text.trim(),
    };
    let valid = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.contains(char::is_whitespace)
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a mail address such as ops@example.com or \"Flotilla <flotilla@example.com>\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let spec: NotifierSpec = serde_saphyr::from_str(yaml).expect("a notifier spec");
        let mut out = Vec::new();
        check(&spec, &mut |path, message| {
            out.push(format!("{path}: {message}"))
        });
        out
    }

    #[test]
    fn a_complete_notifier_has_no_problem() {
        let found = problems(
            "events: [RunFailed, SoftLimitExceeded]\nselector: { matchLabels: { team: data } }\nemail:\n  host: smtp.example.com\n  from: Flotilla <flotilla@example.com>\n  to: [ops@example.com]\n  username: flotilla\n  passwordSecretRef: { name: smtp, key: PASSWORD }\n  caSecretRef: { name: smtp, key: CA }\nteams: { urlSecretRef: { name: hooks, key: TEAMS } }\nslack: { urlSecretRef: { name: hooks, key: SLACK } }\nwebhook: { url: https://hooks.example.com/flotilla, signingKeySecretRef: { name: hooks, key: HMAC } }\n",
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn each_mistake_is_named_with_its_field() {
        for (yaml, expected) in [
            ("events: [RunFailed]\n", "spec: no channel"),
            (
                "webhook: { url: ftp://x }\n",
                "spec.webhook.url: \"ftp://x\" is not an http:// or https:// URL",
            ),
            ("webhook: {}\n", "spec.webhook.url: required"),
            (
                "email: { host: 'smtp://mail:587', from: a@b.c, to: [x@y.z] }\n",
                "spec.email.host: \"smtp://mail:587\" is not a host name",
            ),
            (
                "email: { host: mail, from: flotilla, to: [x@y.z] }\n",
                "spec.email.from: \"flotilla\" is not a mail address",
            ),
            (
                "email: { host: mail, from: a@b.c, to: [] }\n",
                "spec.email.to: no recipient",
            ),
            (
                "email: { host: mail, from: a@b.c, to: [x@y.z], username: u }\n",
                "spec.email.passwordSecretRef: a user name needs a password",
            ),
            (
                "email: { host: mail, tls: None, from: a@b.c, to: [x@y.z], username: u, passwordSecretRef: { name: s, key: P } }\n",
                "spec.email.tls: None would send the password unencrypted",
            ),
            (
                "slack: { urlSecretRef: { name: Hooks, key: url-key } }\n",
                "spec.slack.urlSecretRef.name: \"Hooks\" is not a DNS-1123 label",
            ),
            (
                "slack: { urlSecretRef: { name: hooks, key: url-key } }\n",
                "spec.slack.urlSecretRef.key: \"url-key\" is not a key",
            ),
            (
                "events: [RunFailed, RunFailed]\nslack: { urlSecretRef: { name: hooks, key: URL } }\n",
                "spec.events[1]: RunFailed is listed twice",
            ),
        ] {
            let found = problems(yaml);
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{yaml}: expected {expected:?} among {found:?}"
            );
        }
    }

    #[test]
    fn mailboxes_and_urls() {
        for good in [
            "a@b.c",
            "Ops Team <ops@example.com>",
            "x.y+z@mail.example.org",
        ] {
            assert!(check_mailbox(good).is_ok(), "{good}");
        }
        for bad in ["", "@b.c", "a@", "a b@c.d", "a@b@c", "Name <nobody>"] {
            assert!(check_mailbox(bad).is_err(), "{bad}");
        }
        assert!(check_http_url("http://127.0.0.1:9/x").is_ok());
        assert!(check_http_url("https://").is_err());
    }
}
