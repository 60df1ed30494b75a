//! Talking to the remote with git2: credentials (token or deploy key, handed to libgit2
//! only through its credential callback), SSH host key checking, and fetching the one
//! configured branch into a bare mirror. The mirror's `config` never names the remote:
//! fetches use an anonymous, in-memory remote, so neither URL nor token is written to
//! disk.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions,
    ProxyOptions, RemoteCallbacks, Repository,
};

use super::GitError;
use super::known_hosts::{HostKeyVerdict, KnownHosts, append_pin};
use super::remote::{RemoteUrl, host_of};

/// An SSH deploy key: a file, or the key text itself (`GIT_SYNC_DEPLOY_KEY`).
#[derive(Clone)]
pub enum DeployKey {
    /// Path of a private key file.
    File(PathBuf),
    /// The private key in PEM/OpenSSH form.
    Text(String),
}

impl DeployKey {
    /// Reads `GIT_SYNC_DEPLOY_KEY`'s value: key text if it holds a `-----BEGIN` line,
    /// otherwise a path.
    pub fn from_setting(value: &str) -> Self {
        if value.contains("-----BEGIN") {
            DeployKey::Text(value.to_owned())
        } else {
            DeployKey::File(PathBuf::from(value.trim()))
        }
    }
}

impl fmt::Debug for DeployKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployKey::File(path) => write!(f, "DeployKey::File({})", path.display()),
            DeployKey::Text(_) => f.write_str("DeployKey::Text(<redacted>)"),
        }
    }
}

/// How the git source authenticates, and which SSH hosts it trusts.
#[derive(Clone, Default)]
pub struct GitAuth {
    /// HTTPS token (`GIT_SYNC_TOKEN`), sent as the password of basic auth.
    pub token: Option<String>,
    /// User name sent with the token when the URL names none; default `x-access-token`.
    pub username: Option<String>,
    /// SSH deploy key (`GIT_SYNC_DEPLOY_KEY`).
    pub deploy_key: Option<DeployKey>,
    /// OpenSSH `known_hosts` file (`GIT_SSH_KNOWN_HOSTS`).
    pub known_hosts: Option<PathBuf>,
    /// Trust (and pin) an SSH host key never seen before (`GIT_SSH_ACCEPT_NEW_HOST_KEYS`).
    pub accept_new_host_keys: bool,
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("deploy_key", &self.deploy_key)
            .field("known_hosts", &self.known_hosts)
            .field("accept_new_host_keys", &self.accept_new_host_keys)
            .finish()
    }
}

/// What one fetch learned about the branch head.
#[derive(Clone, Debug)]
pub(super) struct Head {
    /// Full commit id.
    pub commit: String,
    /// First line of the commit message.
    pub subject: String,
    /// Author name.
    pub author: String,
    /// Commit time.
    pub time: Option<DateTime<Utc>>,
}

/// One remote with its credentials, for one fetch.
pub(super) struct Transport<'a> {
    pub url: &'a RemoteUrl,
    pub auth: &'a GitAuth,
    /// Where first-use pins are written (`<data-dir>/git/known_hosts`).
    pub pin_file: &'a Path,
    /// Set to abandon a transfer that outlived its deadline.
    pub abort: &'a AtomicBool,
}

impl<'a> Transport<'a> {
    fn callbacks(&self) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        let (url, auth, abort) = (self.url, self.auth, self.abort);
        let mut tried = CredentialType::empty();
        callbacks.credentials(move |request_url, user_from_url, allowed| {
            let kind = credential_kind(allowed);
            if tried.contains(kind) {
                return Err(git2::Error::from_str(
                    "authentication failed: the remote refused the credentials (check GIT_SYNC_TOKEN or GIT_SYNC_DEPLOY_KEY)",
                ));
            }
            tried |= kind;
            credentials(url, auth, request_url, user_from_url, kind)
        });
        let pin_file = self.pin_file;
        callbacks.certificate_check(move |cert, host| match cert.as_hostkey() {
            Some(hostkey) => check_host_key(url, auth, pin_file, host, hostkey),
            None => Ok(CertificateCheckStatus::CertificatePassthrough),
        });
        callbacks.transfer_progress(move |_| !abort.load(Ordering::Relaxed));
        callbacks.sideband_progress(move |_| !abort.load(Ordering::Relaxed));
        callbacks
    }

    /// Fetches the branch into the mirror at `repo_dir` (created when missing) and
    /// returns its head. When the head is already present only the refs are listed.
    pub fn fetch(&self, repo_dir: &Path, branch: &str) -> Result<Head, GitError> {
        let repo = match Repository::open_bare(repo_dir) {
            Ok(repo) => repo,
            Err(_) => Repository::init_bare(repo_dir).map_err(GitError::Repository)?,
        };
        let fetch_error = |e: git2::Error| GitError::Fetch {
            url: self.url.clean().to_owned(),
            message: e.message().to_owned(),
        };
        let mut remote = repo
            .remote_anonymous(self.url.clean())
            .map_err(fetch_error)?;
        let wanted = format!("refs/heads/{branch}");
        let advertised = {
            let connection = remote
                .connect_auth(Direction::Fetch, Some(self.callbacks()), Some(proxy()))
                .map_err(fetch_error)?;
            connection
                .list()
                .map_err(fetch_error)?
                .iter()
                .find(|head| head.name() == wanted)
                .map(|head| head.oid())
        };
        let oid = advertised.ok_or_else(|| GitError::BranchNotFound {
            url: self.url.clean().to_owned(),
            branch: branch.to_owned(),
        })?;
        let tracking = format!("refs/remotes/origin/{branch}");
        let oid = if repo.find_commit(oid).is_ok() {
            oid
        } else {
            let mut options = FetchOptions::new();
            options
                .remote_callbacks(self.callbacks())
                .proxy_options(proxy())
                .download_tags(AutotagOption::None)
                .update_fetchhead(false);
            let refspec = format!("+{wanted}:{tracking}");
            remote
                .fetch(&[refspec.as_str()], Some(&mut options), None)
                .map_err(fetch_error)?;
            repo.refname_to_id(&tracking)
                .map_err(GitError::Repository)?
        };
        // Keeps the commit reachable, so later fetches negotiate from it.
        repo.reference(&tracking, oid, true, "flotilla sync")
            .map_err(GitError::Repository)?;
        let commit = repo.find_commit(oid).map_err(GitError::Repository)?;
        Ok(Head {
            commit: oid.to_string(),
            subject: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default())
                .into_owned(),
            author: String::from_utf8_lossy(commit.author().name_bytes()).into_owned(),
            time: DateTime::from_timestamp(commit.time().seconds(), 0),
        })
    }
}

fn proxy() -> ProxyOptions<'static> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

/// The one credential type answered for a request, most specific first.
fn credential_kind(allowed: CredentialType) -> CredentialType {
    [
        CredentialType::SSH_KEY,
        CredentialType::USER_PASS_PLAINTEXT,
        CredentialType::USERNAME,
    ]
    .into_iter()
    .find(|kind| allowed.contains(*kind))
    .unwrap_or(allowed)
}

fn credentials(
    url: &RemoteUrl,
    auth: &GitAuth,
    request_url: &str,
    user_from_url: Option<&str>,
    kind: CredentialType,
) -> Result<Cred, git2::Error> {
    let user = user_from_url
        .map(str::to_owned)
        .or_else(|| url.username.clone())
        .or_else(|| auth.username.clone());
    if kind == CredentialType::SSH_KEY {
        let user = user.unwrap_or_else(|| "git".to_owned());
        return match &auth.deploy_key {
            Some(DeployKey::File(path)) => Cred::ssh_key(&user, None, path, None),
            Some(DeployKey::Text(key)) => Cred::ssh_key_from_memory(&user, None, key, None),
            None => Err(git2::Error::from_str(
                "the remote wants an SSH key: set GIT_SYNC_DEPLOY_KEY",
            )),
        };
    }
    if kind == CredentialType::USERNAME {
        return Cred::username(&user.unwrap_or_else(|| "git".to_owned()));
    }
    if kind == CredentialType::USER_PASS_PLAINTEXT {
        let Some(token) = auth.token.as_deref().or(url.password()) else {
            return Err(git2::Error::from_str(
                "the remote requires authentication: set GIT_SYNC_TOKEN",
            ));
        };
        let asked = host_of(request_url).unwrap_or_default();
        if asked != url.host {
            return Err(git2::Error::from_str(&format!(
                "refusing to send the token to {asked}: it is only sent to {}",
                url.host
            )));
        }
        return Cred::userpass_plaintext(
            &user.unwrap_or_else(|| "x-access-token".to_owned()),
            token,
        );
    }
    Err(git2::Error::from_str(
        "the remote asks for an unsupported kind of credential",
    ))
}

fn check_host_key(
    url: &RemoteUrl,
    auth: &GitAuth,
    pin_file: &Path,
    host: &str,
    hostkey: &git2::cert::CertHostkey<'_>,
) -> Result<CertificateCheckStatus, git2::Error> {
    let refuse = |message: String| Err(git2::Error::from_str(&message));
    let (Some(key), Some(key_type)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
        return refuse(format!("{host} presented no usable SSH host key"));
    };
    let key_type = key_type.name();
    let port = url.effective_port();
    let mut text = String::new();
    for file in auth
        .known_hosts
        .iter()
        .map(PathBuf::as_path)
        .chain([pin_file])
    {
        match std::fs::read_to_string(file) {
            Ok(content) => {
                text.push_str(&content);
                text.push('\n');
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return refuse(format!("cannot read {}: {e}", file.display())),
        }
    }
    let known = KnownHosts::parse(&text);
    match known.check(host, port, key_type, key) {
        HostKeyVerdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
        HostKeyVerdict::Revoked => refuse(format!("the {key_type} host key of {host} is revoked")),
        HostKeyVerdict::Mismatch => refuse(format!(
            "the {key_type} host key of {host} does not match the known hosts: refusing to connect (a changed key can mean a man-in-the-middle; update GIT_SSH_KNOWN_HOSTS if the server's key really changed)"
        )),
        HostKeyVerdict::Unknown if auth.accept_new_host_keys => {
            append_pin(pin_file, host, port, key_type, key)
                .map_err(|e| git2::Error::from_str(&format!("cannot pin the host key: {e}")))?;
            tracing::warn!(host, key_type, pins = %pin_file.display(), "trusting an SSH host key on first use");
            Ok(CertificateCheckStatus::CertificateOk)
        }
        HostKeyVerdict::Unknown => {
            let hashed = if known.hashed_skipped() > 0 {
                " (hashed |1| entries are not supported: list hosts in plain text, e.g. ssh-keyscan without -H)"
            } else {
                ""
            };
            refuse(format!(
                "{host} is not in the known hosts{hashed}: add its key to GIT_SSH_KNOWN_HOSTS (ssh-keyscan -p {port} {host}) or set GIT_SSH_ACCEPT_NEW_HOST_KEYS=true to trust it on first use"
            ))
        }
    }
}
