//! SSH host key checking against an OpenSSH `known_hosts` file (`GIT_SSH_KNOWN_HOSTS`).
//!
//! Supported: plain host patterns (`host`, `[host]:port`, `*`/`?` wildcards, `!`
//! negation), several patterns per line, and the `@revoked` marker. Hashed entries
//! (`|1|…`, from `ssh-keyscan -H`) need HMAC-SHA1 and are skipped with a note in the
//! refusal message. A host listed with a different key is always refused; an unknown
//! host is refused unless first-use pinning was opted into, in which case its key is
//! appended to the file and trusted from then on.

use std::io::Write;
use std::path::Path;

/// What the file says about a host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// A line lists this host with this key.
    Trusted,
    /// No line names the host.
    Unknown,
    /// The host is listed, but with other keys: possibly a man in the middle.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
}

#[derive(Debug)]
struct Entry {
    patterns: Vec<String>,
    key_type: String,
    key: String,
    revoked: bool,
}

/// The parsed entries of a `known_hosts` file.
#[derive(Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    hashed_skipped: usize,
}

impl KnownHosts {
    /// Reads `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Parses the text of a `known_hosts` file; malformed lines are ignored.
    pub fn parse(text: &str) -> Self {
        let mut hosts = Self::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace().peekable();
            let mut revoked = false;
            if let Some(marker) = fields.peek().filter(|f| f.starts_with('@')) {
                revoked = *marker == "@revoked";
                if !revoked {
                    continue; // @cert-authority: certificates are not supported
                }
                fields.next();
            }
            let (Some(patterns), Some(key_type), Some(key)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if patterns.starts_with("|1|") {
                hosts.hashed_skipped += 1;
                continue;
            }
            hosts.entries.push(Entry {
                patterns: patterns.split(',').map(str::to_ascii_lowercase).collect(),
                key_type: key_type.to_owned(),
                key: key.to_owned(),
                revoked,
            });
        }
        hosts
    }

    /// Checks the key a server presented. `key` is the raw key blob, as in the file
    /// after base64 decoding.
    pub fn check(&self, host: &str, port: u16, key_type: &str, key: &[u8]) -> HostKeyVerdict {
        let name = host_entry_name(host, port);
        let encoded = base64_encode(key);
        let mut listed = false;
        for entry in self
            .entries
            .iter()
            .filter(|e| matches_host(&e.patterns, &name))
        {
            let same = entry.key_type == key_type && entry.key == encoded;
            if entry.revoked {
                if same {
                    return HostKeyVerdict::Revoked;
                }
                continue;
            }
            if same {
                return HostKeyVerdict::Trusted;
            }
            listed = true;
        }
        if listed {
            HostKeyVerdict::Mismatch
        } else {
            HostKeyVerdict::Unknown
        }
    }

    /// How many hashed (`|1|`) lines were skipped.
    pub fn hashed_skipped(&self) -> usize {
        self.hashed_skipped
    }
}

/// Appends a pin for `host` (first-use trust), creating the file with mode 0600.
pub fn append_pin(
    path: &Path,
    host: &str,
    port: u16,
    key_type: &str,
    key: &[u8],
) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(
        file,
        "{} {key_type} {}",
        host_entry_name(host, port),
        base64_encode(key)
    )
}

/// `host`, or `[host]:port` for ports other than 22, as OpenSSH writes them.
fn host_entry_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

fn matches_host(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(pattern.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, as in OpenSSH host patterns.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Standard base64 with padding, as key blobs appear in `known_hosts`.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"flotilla host key";
    const OTHER: &[u8] = b"someone else's key";

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), encoded);
        }
    }

    #[test]
    fn verdicts() {
        let text = format!(
            "# comment\n\
             git.example.com,10.0.0.1 ssh-ed25519 {k}\n\
             [git.example.com]:2222 ssh-ed25519 {o}\n\
             *.corp,!evil.corp ssh-rsa {k}\n\
             @revoked old.example.com ssh-ed25519 {k}\n\
             |1|c2FsdA==|aGFzaA== ssh-ed25519 {k}\n",
            k = base64_encode(KEY),
            o = base64_encode(OTHER)
        );
        let hosts = KnownHosts::parse(&text);
        let table = [
            (
                "git.example.com",
                22,
                "ssh-ed25519",
                KEY,
                HostKeyVerdict::Trusted,
            ),
            (
                "GIT.example.com",
                22,
                "ssh-ed25519",
                KEY,
                HostKeyVerdict::Trusted,
            ),
            (
                "git.example.com",
                22,
                "ssh-ed25519",
                OTHER,
                HostKeyVerdict::Mismatch,
            ),
            (
                "git.example.com",
                22,
                "ssh-rsa",
                KEY,
                HostKeyVerdict::Mismatch,
            ),
            (
                "git.example.com",
                2222,
                "ssh-ed25519",
                OTHER,
                HostKeyVerdict::Trusted,
            ),
            (
                "git.example.com",
                2222,
                "ssh-ed25519",
                KEY,
                HostKeyVerdict::Mismatch,
            ),
            ("build.corp", 22, "ssh-rsa", KEY, HostKeyVerdict::Trusted),
            ("evil.corp", 22, "ssh-rsa", KEY, HostKeyVerdict::Unknown),
            (
                "old.example.com",
                22,
                "ssh-ed25519",
                KEY,
                HostKeyVerdict::Revoked,
            ),
            (
                "new.example.com",
                22,
                "ssh-ed25519",
                KEY,
                HostKeyVerdict::Unknown,
            ),
        ];
        for (host, port, key_type, key, verdict) in table {
            assert_eq!(
                hosts.check(host, port, key_type, key),
                verdict,
                "{host}:{port} {key_type}"
            );
        }
        assert_eq!(hosts.hashed_skipped(), 1);
    }

    #[test]
    fn a_pin_is_trusted_afterwards() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("known_hosts");
        let before = KnownHosts::load(&path).expect("missing file is empty");
        assert_eq!(
            before.check("h", 2222, "ssh-ed25519", KEY),
            HostKeyVerdict::Unknown
        );
        append_pin(&path, "h", 2222, "ssh-ed25519", KEY).expect("pin");
        let after = KnownHosts::load(&path).expect("reads");
        assert_eq!(
            after.check("h", 2222, "ssh-ed25519", KEY),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            after.check("h", 2222, "ssh-ed25519", OTHER),
            HostKeyVerdict::Mismatch
        );
    }
}
