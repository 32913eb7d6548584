use serde::{Deserialize, Serialize};

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
}
