//! From `[user@]host[:port]` and `~/.ssh/config` to the list of SSH hops to
//! connect through (ProxyJump hosts first, the target last).
//!
//! Command-line parts win over the config, as with `ssh`: `--remote
//! alice@box:2222` uses user alice and port 2222 whatever `Host box` says.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{HostParams, ParseRule, SshConfig};

use super::TunnelError;

/// ProxyJump chains longer than this are surely a loop in the config.
const MAX_JUMPS: usize = 8;

/// `[user@]host[:port]` as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Destination {
    /// Parses `[user@]host[:port]`; an IPv6 address takes brackets when a
    /// port follows (`[::1]:2222`). `ssh://` URIs (ProxyJump allows them) are
    /// accepted too.
    pub fn parse(input: &str) -> Result<Self, TunnelError> {
        let bad = |reason: &str| TunnelError::Destination {
            destination: input.to_owned(),
            reason: reason.to_owned(),
        };
        let s = input.trim();
        let s = s.strip_prefix("ssh://").unwrap_or(s);
        let (user, hostport) = match s.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
            Some(_) => return Err(bad("empty user name")),
            None => (None, s),
        };
        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after ']'")),
            };
            (h.to_owned(), port)
        } else if hostport.matches(':').count() == 1 {
            let (h, p) = hostport.split_once(':').unwrap_or((hostport, ""));
            (h.to_owned(), Some(p))
        } else {
            // A bare IPv6 address (several colons) has no port.
            (hostport.to_owned(), None)
        };
        if host.is_empty() {
            return Err(bad("empty host name"));
        }
        if host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("host names may not start with '-' or contain spaces"));
        }
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
            ),
            None => None,
        };
        Ok(Self { user, host, port })
    }
}

/// One SSH server to connect to and log into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hop {
    /// The name as typed or as written in ProxyJump (a config alias, often).
    pub alias: String,
    /// Where to connect (HostName), also the name known_hosts is checked for.
    pub host_name: String,
    pub port: u16,
    pub user: String,
    /// Identity files from the command line and the config, in that order.
    /// Empty means: try the default ones.
    pub identity_files: Vec<PathBuf>,
    pub connect_timeout: Duration,
}

impl Hop {
    /// `host:port` for messages, bracketed for IPv6.
    pub fn endpoint(&self) -> String {
        if self.host_name.contains(':') {
            format!("[{}]:{}", self.host_name, self.port)
        } else {
            format!("{}:{}", self.host_name, self.port)
        }
    }

    /// `user@host:port`, the way errors and logs name a hop.
    pub fn label(&self) -> String {
        format!("{}@{}", self.user, self.endpoint())
    }
}

/// The hops to the target, jump hosts first.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub hops: Vec<Hop>,
}

impl Route {
    pub fn target(&self) -> &Hop {
        // A route always ends with its target (see `resolve`).
        &self.hops[self.hops.len() - 1]
    }
}

/// Reads the ssh config: `explicit` (`--ssh-config`) must exist; the default
/// `~/.ssh/config` may be missing.
pub(crate) fn load_config(explicit: Option<&Path>) -> Result<SshConfig, TunnelError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::home_dir() {
            Some(home) => (home.join(".ssh").join("config"), false),
            None => return Ok(SshConfig::default()),
        },
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SshConfig::default());
        }
        Err(e) => {
            return Err(TunnelError::Config {
                path,
                reason: e.to_string(),
            });
        }
    };
    // Options we do not use (ControlMaster, ForwardX11…) must not make a
    // perfectly good config unreadable.
    SshConfig::default()
        .parse(
            &mut BufReader::new(file),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| TunnelError::Config {
            path,
            reason: e.to_string(),
        })
}

/// Resolves the destination through the config into a route.
pub(crate) fn resolve(
    destination: &Destination,
    config: &SshConfig,
    cli_identities: &[PathBuf],
) -> Result<Route, TunnelError> {
    let mut hops = Vec::new();
    resolve_into(destination, config, cli_identities, &mut hops, 0)?;
    Ok(Route { hops })
}

fn resolve_into(
    destination: &Destination,
    config: &SshConfig,
    cli_identities: &[PathBuf],
    hops: &mut Vec<Hop>,
    depth: usize,
) -> Result<(), TunnelError> {
    if depth > MAX_JUMPS {
        return Err(TunnelError::Destination {
            destination: destination.host.clone(),
            reason: format!("more than {MAX_JUMPS} ProxyJump hops (a loop in the ssh config?)"),
        });
    }
    let params = config.query(&destination.host);
    // The jump hosts of this hop come before it, each resolved through the
    // config in turn (they may have their own User, Port, ProxyJump).
    for jump in jumps(&params) {
        let jump = Destination::parse(&jump)?;
        resolve_into(&jump, config, cli_identities, hops, depth + 1)?;
    }
    hops.push(hop(destination, &params, cli_identities));
    Ok(())
}

fn jumps(params: &HostParams) -> Vec<String> {
    let Some(list) = &params.proxy_jump else {
        return Vec::new();
    };
    // `ProxyJump none` disables jumping (useful to override a wildcard).
    if list.len() == 1 && list[0].eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    list.iter()
        .flat_map(|j| j.split(','))
        .map(str::trim)
        .filter(|j| !j.is_empty())
        .map(str::to_owned)
        .collect()
}

fn hop(destination: &Destination, params: &HostParams, cli_identities: &[PathBuf]) -> Hop {
    let host_name = params
        .host_name
        .clone()
        .unwrap_or_else(|| destination.host.clone());
    let mut identity_files = cli_identities.to_vec();
    identity_files.extend(params.identity_file.iter().flatten().cloned());
    Hop {
        alias: destination.host.clone(),
        host_name,
        port: destination.port.or(params.port).unwrap_or(22),
        user: destination
            .user
            .clone()
            .or_else(|| params.user.clone())
            .unwrap_or_else(local_user),
        identity_files,
        connect_timeout: params.connect_timeout.unwrap_or(Duration::from_secs(15)),
    }
}

/// The local login name, as `ssh` defaults to it.
fn local_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty()
        {
            return u;
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we
    // copy the name out before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "root".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SshConfig {
        SshConfig::default()
            .parse(
                &mut BufReader::new(text.as_bytes()),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .unwrap()
    }

    #[test]
    fn parse_destinations() {
        let d = Destination::parse("alice@box:2222").unwrap();
        assert_eq!(
            d,
            Destination {
                user: Some("alice".into()),
                host: "box".into(),
                port: Some(2222)
            }
        );
        assert_eq!(Destination::parse("box").unwrap().port, None);
        assert_eq!(Destination::parse("[::1]:22").unwrap().host, "::1");
        assert_eq!(Destination::parse("::1").unwrap().port, None);
        assert_eq!(
            Destination::parse("ssh://bob@j:2200")
                .unwrap()
                .user
                .as_deref(),
            Some("bob")
        );
        for bad in [
            "",
            "@box",
            "box:",
            "box:0",
            "box:99999",
            "-oProxyCommand=x",
            "a b",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_is_honoured_and_cli_wins() {
        let cfg = config(
            "Host work\n  HostName 10.1.2.3\n  User carol\n  Port 2200\n  IdentityFile /keys/work\n  ProxyJump jump\n\
             Host jump\n  HostName 10.0.0.1\n  User jumper\n  Port 2201\n",
        );
        let route = resolve(&Destination::parse("work").unwrap(), &cfg, &[]).unwrap();
        assert_eq!(route.hops.len(), 2);
        let jump = &route.hops[0];
        assert_eq!(
            (jump.host_name.as_str(), jump.port, jump.user.as_str()),
            ("10.0.0.1", 2201, "jumper")
        );
        let t = route.target();
        assert_eq!(
            (t.host_name.as_str(), t.port, t.user.as_str()),
            ("10.1.2.3", 2200, "carol")
        );
        assert_eq!(t.identity_files, vec![PathBuf::from("/keys/work")]);

        let route = resolve(
            &Destination::parse("dave@work:22").unwrap(),
            &cfg,
            &[PathBuf::from("/cli/key")],
        )
        .unwrap();
        let t = route.target();
        assert_eq!((t.port, t.user.as_str()), (22, "dave"));
        assert_eq!(
            t.identity_files,
            vec![PathBuf::from("/cli/key"), PathBuf::from("/keys/work")]
        );
    }

    #[test]
    fn proxy_jump_lists_and_loops() {
        let cfg = config("Host t\n  ProxyJump a@j1:1,j2\n");
        let route = resolve(&Destination::parse("t").unwrap(), &cfg, &[]).unwrap();
        let names: Vec<_> = route.hops.iter().map(|h| h.alias.as_str()).collect();
        assert_eq!(names, ["j1", "j2", "t"]);
        assert_eq!(route.hops[0].user, "a");

        let cfg = config("Host loop\n  ProxyJump loop\n");
        assert!(resolve(&Destination::parse("loop").unwrap(), &cfg, &[]).is_err());

        let cfg = config("Host x\n  ProxyJump none\n");
        let route = resolve(&Destination::parse("x").unwrap(), &cfg, &[]).unwrap();
        assert_eq!(route.hops.len(), 1);
    }
}
