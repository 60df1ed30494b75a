//! Fernet encryption of secret values: the keyring built from `ENCRYPTION_KEY`
//! (several keys, newest first: encrypt with the first, decrypt with any), compatible
//! with Python's `cryptography.fernet` tokens that Fast-Flow writes.
//!
//! Plaintext leaves this module only towards container creation; it is never logged.

use std::fmt;

use fernet::{Fernet, MultiFernet};
use thiserror::Error;

/// Problems with keys or tokens. Messages never contain secret values.
#[derive(Debug, Error)]
pub enum SecretsError {
    /// `ENCRYPTION_KEY` is unset or empty.
    #[error(
        "ENCRYPTION_KEY is not set; generate a key with `flotilla secret gen-key` and export ENCRYPTION_KEY=<key>"
    )]
    MissingKey,
    /// One entry of `ENCRYPTION_KEY` is not a Fernet key.
    #[error(
        "ENCRYPTION_KEY entry {position} is not a Fernet key (32 bytes, URL-safe base64, 44 characters); generate one with `flotilla secret gen-key`"
    )]
    MalformedKey {
        /// 1-based position in the comma-separated list.
        position: usize,
    },
    /// No configured key decrypts the token.
    #[error(
        "no configured ENCRYPTION_KEY decrypts {what}; it was encrypted with another key (add that key to ENCRYPTION_KEY, after the current one)"
    )]
    Undecryptable {
        /// What the token belongs to, e.g. `Secret/default/warehouse key DB_PASSWORD`.
        what: String,
    },
    /// The decrypted value is not UTF-8 text.
    #[error("{what} does not decrypt to UTF-8 text")]
    NotText {
        /// What the token belongs to.
        what: String,
    },
}

impl SecretsError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            SecretsError::MissingKey | SecretsError::MalformedKey { .. } => "secrets.key.invalid",
            SecretsError::Undecryptable { .. } | SecretsError::NotText { .. } => {
                "secrets.unreadable"
            }
        }
    }
}

/// The operator's Fernet keys, newest first.
pub struct Keyring {
    keys: MultiFernet,
    primary: Fernet,
    count: usize,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} keys)", self.count)
    }
}

impl Keyring {
    /// Parses `ENCRYPTION_KEY`: one key, or several separated by commas, newest first.
    pub fn from_env_value(value: &str) -> Result<Keyring, SecretsError> {
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(SecretsError::MissingKey);
        }
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let key = Fernet::new(entry).ok_or(SecretsError::MalformedKey { position: i + 1 })?;
            keys.push(key);
        }
        let primary = Fernet::new(entries[0]).ok_or(SecretsError::MalformedKey { position: 1 })?;
        Ok(Keyring {
            count: keys.len(),
            keys: MultiFernet::new(keys),
            primary,
        })
    }

    /// A new random key, printed by `flotilla secret gen-key`.
    pub fn generate_key() -> String {
        Fernet::generate_key()
    }

    /// Encrypts with the newest key.
    pub fn encrypt(&self, plaintext: &str) -> String {
        self.primary.encrypt(plaintext.as_bytes())
    }

    /// Decrypts with any configured key; `what` names the value in errors.
    pub fn decrypt(&self, token: &str, what: &str) -> Result<String, SecretsError> {
        let bytes = self
            .keys
            .decrypt(token)
            .map_err(|_| SecretsError::Undecryptable {
                what: what.to_owned(),
            })?;
        String::from_utf8(bytes).map_err(|_| SecretsError::NotText {
            what: what.to_owned(),
        })
    }

    /// True when the newest key decrypts the token (rotation leaves such tokens alone).
    pub fn is_current(&self, token: &str) -> bool {
        self.primary.decrypt(token).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_with_first_decrypt_with_any() {
        let old = Keyring::generate_key();
        let new = Keyring::generate_key();
        let old_ring = Keyring::from_env_value(&old).expect("key");
        let token = old_ring.encrypt("hunter22");
        let rotated = Keyring::from_env_value(&format!("{new}, {old}")).expect("keys");
        assert_eq!(
            rotated.decrypt(&token, "t").expect("old key decrypts"),
            "hunter22"
        );
        assert!(!rotated.is_current(&token));
        let fresh = rotated.encrypt("hunter22");
        assert!(rotated.is_current(&fresh));
        let only_new = Keyring::from_env_value(&new).expect("key");
        let err = only_new
            .decrypt(&token, "Secret/default/x key A")
            .expect_err("wrong key");
        assert!(err.to_string().contains("Secret/default/x key A"));
        assert!(!err.to_string().contains("hunter22"));
    }

    #[test]
    fn malformed_keys_are_named_by_position() {
        let good = Keyring::generate_key();
        let err = Keyring::from_env_value(&format!("{good},nope")).expect_err("bad");
        assert!(err.to_string().contains("entry 2"), "{err}");
        assert!(matches!(
            Keyring::from_env_value(" , "),
            Err(SecretsError::MissingKey)
        ));
    }
}

/// Values shorter than this are not redacted: too likely to match ordinary output.
pub const MIN_REDACTED_LEN: usize = 4;

/// Replaces secret values in output lines with `[secret]`.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a value containing another is replaced whole.
    values: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// A redactor of `values` (those of at least [`MIN_REDACTED_LEN`] characters; each
    /// line of a multi-line value on its own, since output is stored line by line).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .flat_map(|v| std::iter::once(v).chain(v.lines()))
            .map(|v| v.trim_end_matches(['\r', '\n']))
            .filter(|v| v.chars().count() >= MIN_REDACTED_LEN)
            .map(str::to_owned)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self { values }
    }

    /// True when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The line with every secret value replaced by `[secret]`.
    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), "[secret]");
            }
        }
        out
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::Redactor;

    #[test]
    fn values_are_replaced_longest_first_and_short_ones_kept() {
        let redactor = Redactor::new(["hunter22", "hunter22-extended", "abc", "line1\nline2-long"]);
        assert_eq!(redactor.redact("pw=hunter22-extended!"), "pw=[secret]!");
        assert_eq!(
            redactor.redact("pw=hunter22 and abc"),
            "pw=[secret] and abc"
        );
        assert_eq!(redactor.redact("second: line2-long"), "second: [secret]");
    }

    #[test]
    fn a_value_anywhere_in_a_line_is_redacted_every_time_it_occurs() {
        // `redact` sees whole lines only: the follower splits the container's output at
        // newlines (Docker joins the writes of one line). That a value written in two
        // chunks of one line is redacted end to end is `tests/secrets.rs`'s leak scan.
        let redactor = Redactor::new(["s3cr3t-token"]);
        assert_eq!(redactor.redact("s3cr3t-token"), "[secret]");
        assert_eq!(
            redactor.redact("s3cr3t-token=s3cr3t-token;xs3cr3t-tokenx"),
            "[secret]=[secret];x[secret]x"
        );
        // A part of the value, or the value broken by other text, is not the value.
        assert_eq!(redactor.redact("s3cr3t-"), "s3cr3t-");
        assert_eq!(redactor.redact("s3cr3 t-token"), "s3cr3 t-token");
    }
}
