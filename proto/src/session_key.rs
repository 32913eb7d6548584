use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The session a client gets when it names none.
pub const DEFAULT_SESSION: &str = "main";

/// Why a session key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    #[error("session key is empty")]
    Empty,
    #[error("session key is longer than 128 characters")]
    TooLong,
    #[error("session key may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'")]
    BadCharacter,
}

/// [`validate_session_key`]'s rule as a regular expression, for those that
/// cannot call it: the page's copies (`webchat-dist/boot.js`, `js/util.js`)
/// are kept equal to it by a test in the relay.
pub const SESSION_KEY_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// Session keys are 1–128 characters of `[A-Za-z0-9._:-]`.
///
/// The rule is strict because keys end up in URLs, log lines and the index
/// file; it also rules out path tricks (`/`, `..` alone is harmless since the
/// key never names a file — transcripts are named by sessionId).
pub fn validate_session_key(key: &str) -> Result<(), SessionKeyError> {
    if key.is_empty() {
        return Err(SessionKeyError::Empty);
    }
    if key.len() > 128 {
        return Err(SessionKeyError::TooLong);
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(SessionKeyError::BadCharacter);
    }
    Ok(())
}

/// A session key that passed [`validate_session_key`]: deserializing one
/// checks it, so a request type holding one needs no check of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(String);

impl SessionKey {
    /// Starts the message of every refused key a decoder reports, so that a
    /// server can answer `invalid_session_key` instead of a generic decode
    /// error ([`SessionKey::is_refusal`]): serde's errors carry no type.
    pub const REFUSAL: &'static str = "invalid session key: ";

    pub fn parse(key: &str) -> Result<Self, SessionKeyError> {
        validate_session_key(key)?;
        Ok(Self(key.to_owned()))
    }

    /// [`DEFAULT_SESSION`].
    pub fn main() -> Self {
        Self(DEFAULT_SESSION.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether a decoder's error message is a refused session key.
    pub fn is_refusal(message: &str) -> bool {
        message.starts_with(Self::REFUSAL)
    }
}

impl std::ops::Deref for SessionKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SessionKey> for String {
    fn from(key: SessionKey) -> Self {
        key.0
    }
}

impl TryFrom<String> for SessionKey {
    type Error = SessionKeyError;
    fn try_from(key: String) -> Result<Self, SessionKeyError> {
        validate_session_key(&key)?;
        Ok(Self(key))
    }
}

impl Serialize for SessionKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::try_from(raw)
            .map_err(|e| serde::de::Error::custom(format_args!("{}{e}", SessionKey::REFUSAL)))
    }
}

/// The key's rule as the OpenAPI document states it, once.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for SessionKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[A-Za-z0-9._:-]+$"))
            .min_length(Some(1))
            .max_length(Some(128))
            .description(Some(
                "A session key: 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for SessionKey {}

/// How hard the model should think; stored per session in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ThinkingLevel {
    #[default]
    Off,
    Minimal,
    Low,
    Medium,
    High,
}

impl ThinkingLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Self::Off,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_session_key("main").is_ok());
        assert!(validate_session_key("agent:main.v2_x-1").is_ok());
        assert_eq!(validate_session_key(""), Err(SessionKeyError::Empty));
        assert_eq!(
            validate_session_key(&"a".repeat(129)),
            Err(SessionKeyError::TooLong)
        );
        assert!(validate_session_key(&"a".repeat(128)).is_ok());
        for bad in ["a/b", "../x", "a b", "é", "a\0", "a\n"] {
            assert_eq!(
                validate_session_key(bad),
                Err(SessionKeyError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_session_key_is_checked_when_it_is_read() {
        let key: SessionKey = serde_json::from_str(r#""agent:main.v2""#).unwrap();
        assert_eq!(&*key, "agent:main.v2");
        assert_eq!(serde_json::to_string(&key).unwrap(), r#""agent:main.v2""#);
        for bad in [r#""""#, r#""a/b""#, r#""x y""#] {
            let err = serde_json::from_str::<SessionKey>(bad).unwrap_err();
            assert!(SessionKey::is_refusal(&err.to_string()), "{bad}: {err}");
        }
        // Another decode error is not a refused key.
        let err = serde_json::from_str::<SessionKey>("5").unwrap_err();
        assert!(!SessionKey::is_refusal(&err.to_string()), "{err}");
        assert_eq!(SessionKey::main().as_str(), DEFAULT_SESSION);
    }
}
