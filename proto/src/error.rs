use serde::{Deserialize, Serialize};

/// Machine-readable error codes; the HTTP status each maps to is fixed by the
/// protocol, so it lives with the code rather than at every call site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidSessionKey,
    EmptyText,
    Unauthorized,
    Forbidden,
    ForbiddenHost,
    ForbiddenOrigin,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    TurnInProgress,
    /// The request contradicts the state of what it names: a restore onto a
    /// key in use again, an archive in a store the relay does not own.
    Conflict,
    /// A check asked to run now is already running.
    CheckRunning,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    AgentError,
    AgentTimeout,
    StoreFull,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidSessionKey | Self::EmptyText => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::ForbiddenHost | Self::ForbiddenOrigin => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::TurnInProgress | Self::Conflict | Self::CheckRunning => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::AgentError => 502,
            Self::Unavailable => 503,
            Self::AgentTimeout => 504,
            Self::StoreFull => 507,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidSessionKey => "invalid_session_key",
            Self::EmptyText => "empty_text",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::ForbiddenHost => "forbidden_host",
            Self::ForbiddenOrigin => "forbidden_origin",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::TurnInProgress => "turn_in_progress",
            Self::Conflict => "conflict",
            Self::CheckRunning => "check_running",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::AgentError => "agent_error",
            Self::AgentTimeout => "agent_timeout",
            Self::StoreFull => "store_full",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// `{"ok":false,"error":"human sentence","code":"snake_case"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub ok: bool,
    pub error: String,
    pub code: ErrorCode,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: error.into(),
            code,
        }
    }
}

/// An error and its causes, `a: b: c`, as a person reads it: reqwest's own
/// message ("error sending request") says nothing of why without them. A
/// cause whose text an earlier part already holds is left out. One rule for
/// the relay, the CLI and the shell.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod chain_tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("outer repeats: inner")]
    struct Middle(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn causes_are_joined_without_repeats() {
        assert_eq!(
            error_chain(&Outer(Middle(Inner))),
            "outer: outer repeats: inner"
        );
        assert_eq!(error_chain(&Inner), "inner");
    }
}
