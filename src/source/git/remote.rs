//! The repository URL as configured: parsed once into what the transport needs (scheme,
//! host, port, user) and what may be shown (the URL without any credentials). Passwords
//! typed into the URL are taken out here and treated like `GIT_SYNC_TOKEN`, so they are
//! never handed to libgit2 as part of a URL, stored in `.git/config` or logged.

use std::fmt;

/// A parsed repository URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// `https`, `http`, `ssh`, `git` or `file`; `ssh` for scp-like `user@host:path`.
    pub scheme: String,
    /// User named in the URL (`git` of `git@github.com:org/repo`).
    pub username: Option<String>,
    /// Password named in the URL; never part of [`RemoteUrl::clean`].
    password: Option<String>,
    /// Host name (empty for `file` URLs).
    pub host: String,
    /// Port, when the URL names one.
    pub port: Option<u16>,
    /// The URL without password (and, for http(s), without user).
    clean: String,
}

impl RemoteUrl {
    /// Parses `https://…`, `http://…`, `ssh://…`, `git://…`, `file://…`, an absolute
    /// local path, or scp-like `user@host:path`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the repository URL is empty".into());
        }
        if text.starts_with('/') {
            return Ok(Self::local(text));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Self::scp_like(text);
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            return Ok(Self::local(text));
        }
        if !matches!(scheme.as_str(), "https" | "http" | "ssh" | "git") {
            return Err(format!(
                "unsupported URL scheme {scheme:?}: use https, http, ssh, git or file"
            ));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
                None => (Some(info.to_owned()), None),
            },
            None => (None, None),
        };
        let (host, port) = split_port(hostport)?;
        if host.is_empty() {
            return Err(format!("the URL {scheme}://… names no host"));
        }
        let shown_user = match (&username, scheme.as_str()) {
            (Some(user), "ssh") => format!("{user}@"),
            _ => String::new(),
        };
        let clean = format!("{scheme}://{shown_user}{hostport}{path}");
        Ok(Self {
            scheme,
            username: username.filter(|u| !u.is_empty()),
            password: password.filter(|p| !p.is_empty()),
            host,
            port,
            clean,
        })
    }

    fn local(text: &str) -> Self {
        Self {
            scheme: "file".into(),
            username: None,
            password: None,
            host: String::new(),
            port: None,
            clean: text.to_owned(),
        }
    }

    fn scp_like(text: &str) -> Result<Self, String> {
        let (authority, _path) = text.split_once(':').ok_or_else(|| {
            format!(
                "{text:?} is not a repository URL (https://…, ssh://…, user@host:path or a path)"
            )
        })?;
        let (username, host) = match authority.split_once('@') {
            Some((user, host)) => (Some(user.to_owned()), host.to_owned()),
            None => (None, authority.to_owned()),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("{text:?} is not a repository URL"));
        }
        Ok(Self {
            scheme: "ssh".into(),
            username,
            password: None,
            host,
            port: None,
            clean: text.to_owned(),
        })
    }

    /// The URL as shown and handed to libgit2: no password, no http(s) user.
    pub fn clean(&self) -> &str {
        &self.clean
    }

    /// The password the URL carried, if any (used like a token).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// True for https and http URLs.
    pub fn is_http(&self) -> bool {
        matches!(self.scheme.as_str(), "https" | "http")
    }

    /// True for ssh URLs, scp-like included.
    pub fn is_ssh(&self) -> bool {
        self.scheme == "ssh"
    }

    /// The port the transport connects to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.scheme.as_str() {
            "https" => 443,
            "http" => 80,
            "git" => 9418,
            _ => 22,
        })
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.clean)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.clean)
    }
}

fn split_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        // [IPv6]:port
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{hostport:?}: unclosed '['"))?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port number"))?,
        ),
        None => None,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// The host of a URL libgit2 hands to the credential callback, for checking that a
/// token is only ever sent to the configured host (not to a redirect target).
pub(super) fn host_of(url: &str) -> Option<String> {
    let parsed = RemoteUrl::parse(url).ok()?;
    Some(parsed.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_clean_url() {
        let url = RemoteUrl::parse("https://bot:s3cret@git.example.com:8443/org/repo.git")
            .expect("parses");
        assert_eq!(url.clean(), "https://git.example.com:8443/org/repo.git");
        assert_eq!(url.password(), Some("s3cret"));
        assert_eq!(url.username.as_deref(), Some("bot"));
        assert_eq!(url.port, Some(8443));
        assert!(!format!("{url:?} {url}").contains("s3cret"));
    }

    #[test]
    fn ssh_forms_keep_the_user() {
        let scp = RemoteUrl::parse("git@github.com:org/repo.git").expect("parses");
        assert_eq!(
            (scp.scheme.as_str(), scp.host.as_str()),
            ("ssh", "github.com")
        );
        assert_eq!(scp.username.as_deref(), Some("git"));
        assert_eq!(scp.effective_port(), 22);
        let ssh = RemoteUrl::parse("ssh://git@[::1]:2222/srv/repo.git").expect("parses");
        assert_eq!(ssh.host, "::1");
        assert_eq!(ssh.effective_port(), 2222);
        assert_eq!(ssh.clean(), "ssh://git@[::1]:2222/srv/repo.git");
    }

    #[test]
    fn local_and_bad_urls() {
        assert_eq!(
            RemoteUrl::parse("file:///srv/repo.git")
                .expect("parses")
                .scheme,
            "file"
        );
        assert_eq!(
            RemoteUrl::parse("/srv/repo.git").expect("parses").clean(),
            "/srv/repo.git"
        );
        assert!(RemoteUrl::parse("ftp://host/repo").is_err());
        assert!(RemoteUrl::parse("https://host:99999/repo").is_err());
        assert!(RemoteUrl::parse("just-a-word").is_err());
    }
}
