//! Who may publish a stream: the operator's publish tokens and allow-listed broadcaster keys.
//!
//! Authentication proves that a peer holds *a* key; it says nothing about its right to go live.
//! The registry asks this policy before it registers a stream: a `REGISTER_STREAM` passes when it
//! carries a publish token the operator granted for that stream name (or for every name), or when
//! the broadcaster authenticated with a key whose fingerprint the operator allow-listed for it.
//!
//! Invariants:
//! - a policy with no grant refuses everyone ([`PublishPolicy::default`]); only
//!   [`PublishPolicy::open`], which the simulator and scenario tests use, lets anyone publish;
//! - tokens are kept as SHA-256 digests and a presented token is compared with every grant in
//!   constant time, so neither the time taken nor an early exit tells how close a guess was;
//! - a presented token longer than [`MAX_TOKEN_LEN`] is refused without being hashed.
//!
//! Grant syntax (the supervisor's `--publish-token`, `--publisher-key`, and each line of a
//! `--publish-token-file`): `SECRET` for any stream, `NAME=SECRET` for the stream `NAME` only,
//! `*=SECRET` for any stream when the secret itself holds a `=`.

use crate::auth::normalize_fingerprint;
use crate::protocol::validate_stream_name;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The `code` of the `ERROR` that refuses a `REGISTER_STREAM` without a valid credential.
pub const PUBLISH_FORBIDDEN: &str = "publish_forbidden";

/// Shortest publish token the operator may grant (as for the admin token: guessing must be hopeless).
pub const MIN_TOKEN_LEN: usize = 16;

/// Longest publish token accepted, granted or presented.
pub const MAX_TOKEN_LEN: usize = 256;

/// Which stream names a grant covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every name.
    AnyStream,
    /// This name only.
    Stream(String),
}

impl Scope {
    fn covers(&self, stream: &str) -> bool {
        match self {
            Self::AnyStream => true,
            Self::Stream(name) => name == stream,
        }
    }
}

/// A publish token the operator grants, parsed from `--publish-token` syntax.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The names it allows.
    pub scope: Scope,
    /// The token itself.
    pub token: String,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, even in a debug dump of the configuration.
        f.debug_struct("TokenGrant")
            .field("scope", &self.scope)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A broadcaster key the operator allow-lists, parsed from `--publisher-key` syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    /// The names it allows.
    pub scope: Scope,
    /// `SHA256:<hex>` of the key's SPKI DER, as `auth::fingerprint` prints it.
    pub fingerprint: String,
}

/// Why a grant could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// The part before `=` is neither `*` nor a stream name.
    #[error("`{0}` before `=` is not a stream name (use NAME=SECRET, or *=SECRET when the secret holds `=`)")]
    BadScope(String),
    /// A token outside the length bounds or with spaces or control characters.
    #[error("a publish token must be {MIN_TOKEN_LEN}-{MAX_TOKEN_LEN} visible ASCII characters without spaces (got {0})")]
    BadToken(usize),
    /// Not `SHA256:` and 64 hex digits.
    #[error("a publisher key is SHA256: followed by 64 hex digits, as the broadcaster's key fingerprint")]
    BadFingerprint,
    /// A line of a token file that does not parse.
    #[error("line {line}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        error: Box<Self>,
    },
}

fn split_scope(text: &str) -> Result<(Scope, &str), GrantError> {
    let text = text.trim();
    match text.split_once('=') {
        None => Ok((Scope::AnyStream, text)),
        Some(("*", secret)) => Ok((Scope::AnyStream, secret)),
        Some((name, secret)) => match validate_stream_name(name) {
            Ok(()) => Ok((Scope::Stream(name.to_string()), secret)),
            Err(_) => Err(GrantError::BadScope(name.to_string())),
        },
    }
}

/// Parses `TOKEN`, `NAME=TOKEN` or `*=TOKEN`.
pub fn parse_token_grant(text: &str) -> Result<TokenGrant, GrantError> {
    let (scope, token) = split_scope(text)?;
    let visible = token.bytes().all(|b| b.is_ascii_graphic());
    if !visible || !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len()) {
        return Err(GrantError::BadToken(token.len()));
    }
    Ok(TokenGrant {
        scope,
        token: token.to_string(),
    })
}

/// Parses `SHA256:<hex>` or `NAME=SHA256:<hex>` (any case, prefix optional).
pub fn parse_key_grant(text: &str) -> Result<KeyGrant, GrantError> {
    let (scope, fp) = split_scope(text)?;
    let fingerprint = normalize_fingerprint(fp);
    let hex = &fingerprint["SHA256:".len()..];
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GrantError::BadFingerprint);
    }
    Ok(KeyGrant { scope, fingerprint })
}

/// Parses a token file: one grant per line in [`parse_token_grant`] syntax; blank lines and lines
/// starting with `#` are skipped.
pub fn parse_token_file(text: &str) -> Result<Vec<TokenGrant>, GrantError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(line, text)| {
            parse_token_grant(text).map_err(|e| GrantError::Line {
                line,
                error: Box::new(e),
            })
        })
        .collect()
}

/// Why a `REGISTER_STREAM` was refused; the text goes to the peer as the `ERROR`'s message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// No token came with the request, and the peer's key is not allow-listed.
    #[error("publishing `{0}` needs a publish token from the supervisor's operator (the supervisor prints one at start), and none was given")]
    NoCredential(String),
    /// A token came, but no grant for this name matches it.
    #[error("the publish token given does not allow publishing `{0}`")]
    Denied(String),
}

struct StoredToken {
    scope: Scope,
    digest: [u8; 32],
}

/// The operator's publishing rules; see the module docs.
#[derive(Default)]
pub struct PublishPolicy {
    open: bool,
    tokens: Vec<StoredToken>,
    keys: Vec<KeyGrant>,
}

impl PublishPolicy {
    /// Anyone authenticated as a broadcaster may publish any free name (simulations and scenario
    /// tests; the supervisor never uses it).
    pub fn open() -> Self {
        Self {
            open: true,
            ..Self::default()
        }
    }

    /// A policy granting exactly `tokens` and `keys`.
    pub fn new(tokens: &[TokenGrant], keys: &[KeyGrant]) -> Self {
        let mut policy = Self::default();
        for t in tokens {
            policy.allow_token(t.clone());
        }
        for k in keys {
            policy.allow_key(k.clone());
        }
        policy
    }

    /// Grants a token.
    pub fn allow_token(&mut self, grant: TokenGrant) {
        self.tokens.push(StoredToken {
            scope: grant.scope,
            digest: Sha256::digest(grant.token.as_bytes()).into(),
        });
    }

    /// Allow-lists a broadcaster key.
    pub fn allow_key(&mut self, grant: KeyGrant) {
        self.keys.push(grant);
    }

    /// Whether nothing is granted (and the policy is not open): nobody may publish.
    pub fn is_empty(&self) -> bool {
        !self.open && self.tokens.is_empty() && self.keys.is_empty()
    }

    /// May a broadcaster that authenticated with the key `key_fingerprint` and presents `token`
    /// publish `stream`?
    pub fn check(
        &self,
        stream: &str,
        token: Option<&str>,
        key_fingerprint: Option<&str>,
    ) -> Result<(), PublishError> {
        if self.open {
            return Ok(());
        }
        let key_allowed = key_fingerprint.is_some_and(|fp| {
            let fp = normalize_fingerprint(fp);
            self.keys
                .iter()
                .any(|k| k.fingerprint == fp && k.scope.covers(stream))
        });
        if key_allowed {
            return Ok(());
        }
        match token {
            None => Err(PublishError::NoCredential(stream.to_string())),
            Some(t) if self.token_allows(stream, t) => Ok(()),
            Some(_) => Err(PublishError::Denied(stream.to_string())),
        }
    }

    fn token_allows(&self, stream: &str, token: &str) -> bool {
        if token.len() > MAX_TOKEN_LEN {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every grant is compared, matching or not, so the time taken does not depend on which
        // grant (if any) the token is.
        let allowed = self.tokens.iter().fold(Choice::from(0), |acc, t| {
            acc | (t.digest.ct_eq(&digest) & Choice::from(u8::from(t.scope.covers(stream))))
        });
        allowed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0123456789abcdef-one";
    const T2: &str = "0123456789abcdef-two";
    const FP: &str = "SHA256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn grants_parse_with_and_without_a_stream() {
        let any = parse_token_grant(T1).unwrap();
        assert_eq!(any.scope, Scope::AnyStream);
        assert_eq!(any.token, T1);
        let cam = parse_token_grant(&format!("cam-1={T2}")).unwrap();
        assert_eq!(cam.scope, Scope::Stream("cam-1".into()));
        assert_eq!(cam.token, T2);
        let eq = parse_token_grant("*=abcdefghijklmnop==").unwrap();
        assert_eq!(
            (eq.scope, eq.token.as_str()),
            (Scope::AnyStream, "abcdefghijklmnop==")
        );
        assert!(!format!("{cam:?}").contains(T2), "Debug hides the secret");
    }

    #[test]
    fn bad_grants_are_refused() {
        assert_eq!(parse_token_grant("short"), Err(GrantError::BadToken(5)));
        assert!(parse_token_grant("0123456789abcdef ghi").is_err());
        assert!(parse_token_grant(&"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
        assert!(matches!(
            parse_token_grant(&format!("a/b={T1}")),
            Err(GrantError::BadScope(_))
        ));
        // A base64 secret with padding and no `*=`: refused rather than read as `NAME=`.
        assert!(parse_token_grant("abcdefghijklmnopqrst==").is_err());
        assert!(parse_key_grant("SHA256:abc").is_err());
        let k = parse_key_grant(&format!("cam={}", FP.to_lowercase())).unwrap();
        assert_eq!(k.fingerprint, FP);
        assert_eq!(k.scope, Scope::Stream("cam".into()));
    }

    #[test]
    fn token_files_skip_comments_and_name_bad_lines() {
        let text = format!("# operators\n\n{T1}\n  cam={T2}  \n");
        let grants = parse_token_file(&text).unwrap();
        assert_eq!(grants.len(), 2);
        assert_eq!(grants[1].scope, Scope::Stream("cam".into()));
        let err = parse_token_file(&format!("{T1}\nnope\n")).unwrap_err();
        assert!(err.to_string().starts_with("line 2: "), "{err}");
    }

    #[test]
    fn a_token_allows_only_its_streams() {
        let policy = PublishPolicy::new(
            &[
                parse_token_grant(T1).unwrap(),
                parse_token_grant(&format!("cam={T2}")).unwrap(),
            ],
            &[],
        );
        assert_eq!(policy.check("anything", Some(T1), None), Ok(()));
        assert_eq!(policy.check("cam", Some(T2), None), Ok(()));
        assert_eq!(
            policy.check("other", Some(T2), None),
            Err(PublishError::Denied("other".into()))
        );
        assert_eq!(
            policy.check("cam", None, None),
            Err(PublishError::NoCredential("cam".into()))
        );
        assert!(policy
            .check("cam", Some("wrong-token-0123456"), None)
            .is_err());
        assert!(policy
            .check("cam", Some(&"y".repeat(10_000)), None)
            .is_err());
    }

    #[test]
    fn an_allow_listed_key_needs_no_token() {
        let policy = PublishPolicy::new(&[], &[parse_key_grant(&format!("cam={FP}")).unwrap()]);
        assert_eq!(policy.check("cam", None, Some(&FP.to_lowercase())), Ok(()));
        assert!(policy.check("other", None, Some(FP)).is_err());
        assert!(policy.check("cam", None, None).is_err());
    }

    #[test]
    fn empty_policies_refuse_and_open_ones_allow() {
        let closed = PublishPolicy::default();
        assert!(closed.is_empty());
        assert!(closed.check("s", Some(T1), None).is_err());
        assert!(!PublishPolicy::open().is_empty());
        assert_eq!(PublishPolicy::open().check("s", None, None), Ok(()));
    }
}
