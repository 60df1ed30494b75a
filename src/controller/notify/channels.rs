//! Delivery of one [`Notice`] through one channel of a notifier: the notifier's Secret
//! keys are read and decrypted, then the message goes out by SMTP (lettre over rustls)
//! or HTTP (hyper over rustls, both with the ring provider), within a timeout. Both
//! trust the built-in web roots and the operator's `SSL_CERT_FILE`; mail also a
//! notifier's own CA (`caSecretRef`).
//!
//! Secret values never leave this module except on the wire: errors are redacted of
//! every value read (a Teams or Slack URL is a credential, and transports like to quote
//! the URL they failed on).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use thiserror::Error;

use super::notice::Notice;
use crate::resource::types::{
    ChannelKind, EmailChannel, NotifierSpec, SecretKeyRef, SecretSpec, SmtpTls,
};
use crate::resource::{Kind, ObjectKey};
use crate::secrets::{Keyring, Redactor, SecretsError};
use crate::store::{Store, StoreError};

/// Why a delivery failed.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// A referenced Secret or key does not exist.
    #[error(
        "{field} names Secret {secret} key {key}, which does not exist; create it with `flotilla secret set {secret} {key}=…`"
    )]
    MissingSecret {
        /// The spec field holding the reference.
        field: String,
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
    },
    /// The operator cannot decrypt secrets.
    #[error("secret values cannot be read: {0}")]
    Secrets(#[from] SecretsError),
    /// The store did not answer.
    #[error("cannot read the notifier's secrets: {0}")]
    Store(#[from] StoreError),
    /// The channel's settings cannot be used (an address, a CA certificate).
    #[error("{0}")]
    Config(String),
    /// The SMTP exchange failed.
    #[error("SMTP: {message}")]
    Smtp {
        /// What the transport said.
        message: String,
        /// True for a permanent refusal (5xx): trying again will not help.
        permanent: bool,
    },
    /// The endpoint answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// No answer (connection refused, TLS failure, …).
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// Nothing within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl DeliveryError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryError::MissingSecret { .. } => "notify.secret.missing",
            DeliveryError::Secrets(e) => e.code(),
            DeliveryError::Store(e) => e.code(),
            DeliveryError::Config(_) => "notify.config.invalid",
            DeliveryError::Smtp { .. } => "notify.smtp.failed",
            DeliveryError::Status { .. } => "notify.http.status",
            DeliveryError::Http(_) => "notify.http.failed",
            DeliveryError::Timeout(_) => "notify.timeout",
        }
    }

    /// Whether another try may succeed: not for settings, missing secrets, permanent
    /// SMTP refusals or HTTP 4xx other than 408 and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::MissingSecret { .. }
            | DeliveryError::Secrets(_)
            | DeliveryError::Config(_) => false,
            DeliveryError::Smtp { permanent, .. } => !permanent,
            DeliveryError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            DeliveryError::Store(_) | DeliveryError::Http(_) | DeliveryError::Timeout(_) => true,
        }
    }
}

/// The secret values one notifier uses, decrypted.
#[derive(Default)]
pub struct Resolved {
    values: std::collections::HashMap<(String, String), String>,
}

impl Resolved {
    /// Reads every Secret key `spec` references, from `namespace`.
    pub async fn read(
        store: &Store,
        keyring: Option<&Keyring>,
        namespace: &str,
        spec: &NotifierSpec,
    ) -> Result<Resolved, DeliveryError> {
        let mut resolved = Resolved::default();
        for (field, reference) in spec.secret_refs() {
            let id = (reference.name.clone(), reference.key.clone());
            if resolved.values.contains_key(&id) {
                continue;
            }
            let missing = || DeliveryError::MissingSecret {
                field: field.to_owned(),
                secret: reference.name.clone(),
                key: reference.key.clone(),
            };
            let key = ObjectKey::new(Kind::Secret, namespace, reference.name.clone());
            let secret = store.get(&key).await?.ok_or_else(missing)?;
            let spec: SecretSpec = secret
                .spec_as()
                .map_err(|e| DeliveryError::Config(e.to_string()))?;
            let token = spec
                .encrypted_data
                .get(&reference.key)
                .ok_or_else(missing)?;
            let keyring = keyring.ok_or(SecretsError::MissingKey)?;
            let what = format!(
                "Secret/{namespace}/{} key {}",
                reference.name, reference.key
            );
            resolved.values.insert(id, keyring.decrypt(token, &what)?);
        }
        Ok(resolved)
    }

    fn get(&self, reference: &SecretKeyRef) -> &str {
        self.values
            .get(&(reference.name.clone(), reference.key.clone()))
            .map_or("", String::as_str)
    }

    /// A redactor of every value read.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.values.values().map(String::as_str))
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends notices; one per controller, its HTTP connection pool shared by deliveries.
#[derive(Clone)]
pub struct Sender {
    http: HttpsClient,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Sender {
    /// An HTTP client trusting the built-in web roots and this host's store
    /// (`SSL_CERT_FILE` included).
    pub fn new() -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| unreachable!("ring supports the default TLS versions"));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Delivers `notice` through `channel` of `spec`, in at most `timeout`.
    pub async fn send(
        &self,
        spec: &NotifierSpec,
        channel: ChannelKind,
        secrets: &Resolved,
        notice: &Notice,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let outcome = tokio::time::timeout(timeout, async {
            match channel {
                ChannelKind::Email => match &spec.email {
                    Some(email) => send_mail(email, secrets, notice, timeout).await,
                    None => Ok(()),
                },
                ChannelKind::Teams => match &spec.teams {
                    Some(teams) => {
                        let url = secrets.get(&teams.url_secret_ref);
                        self.post(url, notice.teams_json().to_string(), Vec::new())
                            .await
                    }
                    None => Ok(()),
                },
                ChannelKind::Slack => match &spec.slack {
                    Some(slack) => {
                        let url = secrets.get(&slack.url_secret_ref);
                        self.post(url, notice.slack_json().to_string(), Vec::new())
                            .await
                    }
                    None => Ok(()),
                },
                ChannelKind::Webhook => match &spec.webhook {
                    Some(hook) => {
                        let url = match (&hook.url, &hook.url_secret_ref) {
                            (Some(url), _) => url.as_str(),
                            (None, Some(r)) => secrets.get(r),
                            (None, None) => "",
                        };
                        let body = notice.webhook_json().to_string();
                        let timestamp = chrono::Utc::now().timestamp().to_string();
                        let mut headers = vec![
                            ("x-flotilla-event", notice.event_name().to_owned()),
                            ("x-flotilla-delivery", notice.id.clone()),
                            ("x-flotilla-timestamp", timestamp.clone()),
                        ];
                        if let Some(key) = &hook.signing_key_secret_ref {
                            let signature = sign(secrets.get(key), &timestamp, body.as_bytes());
                            headers.push(("x-flotilla-signature", signature));
                        }
                        self.post(url, body, headers).await
                    }
                    None => Ok(()),
                },
            }
        })
        .await
        .unwrap_or(Err(DeliveryError::Timeout(timeout)));
        outcome.map_err(|e| redact(e, &secrets.redactor()))
    }

    async fn post(
        &self,
        url: &str,
        body: String,
        headers: Vec<(&'static str, String)>,
    ) -> Result<(), DeliveryError> {
        let mut request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("flotilla/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| DeliveryError::Config("the channel's URL is not a valid URL".into()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| DeliveryError::Http(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        Err(DeliveryError::Status {
            status: status.as_u16(),
            body: text,
        })
    }
}

/// `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>`.
pub fn sign(key: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn send_mail(
    email: &EmailChannel,
    secrets: &Resolved,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let config = |field: &str, e: &dyn std::fmt::Display| {
        DeliveryError::Config(format!("spec.email.{field}: {e}"))
    };
    let mut message = Message::builder()
        .from(email.from.parse().map_err(|e| config("from", &e))?)
        .subject(notice.subject())
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        message = message.to(to.parse().map_err(|e| config("to", &e))?);
    }
    let message = message.body(notice.text()).map_err(|e| config("to", &e))?;
    let mode = email.tls.unwrap_or_default();
    let host = email.host.trim();
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(email.port.unwrap_or(mode.default_port()))
        .timeout(Some(timeout));
    if mode != SmtpTls::None {
        let mut parameters = TlsParameters::builder(host.to_owned());
        // The CAs the operator is told to trust (as its HTTP client does).
        if let Some(bundle) = std::env::var_os("SSL_CERT_FILE")
            && let Ok(pem) = std::fs::read(&bundle)
            && let Ok(certificates) = Certificate::from_pem(&pem)
        {
            parameters = parameters.add_root_certificate(certificates);
        }
        if let Some(ca) = &email.ca_secret_ref {
            let certificate = Certificate::from_pem(secrets.get(ca).as_bytes())
                .map_err(|e| config("caSecretRef", &e))?;
            parameters = parameters.add_root_certificate(certificate);
        }
        let parameters = parameters
            .build_rustls()
            .map_err(|e| config("caSecretRef", &e))?;
        transport = transport.tls(match mode {
            SmtpTls::Tls => Tls::Wrapper(parameters),
            _ => Tls::Required(parameters),
        });
    }
    let username = match (&email.username, &email.username_secret_ref) {
        (Some(name), _) => Some(name.clone()),
        (None, Some(r)) => Some(secrets.get(r).to_owned()),
        (None, None) => None,
    };
    if let (Some(username), Some(password)) = (username, &email.password_secret_ref) {
        transport =
            transport.credentials(Credentials::new(username, secrets.get(password).to_owned()));
    }
    transport
        .build()
        .send(message)
        .await
        .map(drop)
        .map_err(|e| DeliveryError::Smtp {
            permanent: e.is_permanent(),
            message: error_chain(&e),
        })
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

fn redact(error: DeliveryError, redactor: &Redactor) -> DeliveryError {
    if redactor.is_empty() {
        return error;
    }
    match error {
        DeliveryError::Smtp { message, permanent } => DeliveryError::Smtp {
            message: redactor.redact(&message),
            permanent,
        },
        DeliveryError::Status { status, body } => DeliveryError::Status {
            status,
            body: redactor.redact(&body),
        },
        DeliveryError::Http(text) => DeliveryError::Http(redactor.redact(&text)),
        DeliveryError::Config(text) => DeliveryError::Config(redactor.redact(&text)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        // Computed independently: printf '1800000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", "1800000000", br#"{"a":1}"#),
            "sha256=7330c9cf7d886970cbebbbb5494c04d2aeff06a990adb7d7a75abfeb0159d291"
        );
    }

    #[test]
    fn transient_errors_are_tried_again() {
        assert!(DeliveryError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(
            DeliveryError::Status {
                status: 503,
                body: String::new()
            }
            .is_transient()
        );
        assert!(
            !DeliveryError::Status {
                status: 404,
                body: String::new()
            }
            .is_transient()
        );
        assert!(!DeliveryError::Config("x".into()).is_transient());
    }
}
