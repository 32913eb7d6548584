//! Every failure leaves the relay as `{"ok":false,"error","code"}` with the
//! status the protocol fixes for its code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loopchat_proto::{ErrorBody, ErrorCode};

use crate::pipeline::TurnError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = self.code.as_str(), error = %self.message, "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        if matches!(
            self.code,
            ErrorCode::PayloadTooLarge | ErrorCode::RequestTimeout
        ) {
            // The rest of the body was never read, so the connection cannot
            // carry another request; saying so keeps clients from reusing it.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full(_) => Self::new(
                ErrorCode::StoreFull,
                "the disk holding the session store is full; nothing was stored",
            ),
            StoreError::Io(e) => {
                tracing::error!(error = %e, "store I/O failed");
                Self::new(
                    ErrorCode::Internal,
                    "the session store could not be read or written",
                )
            }
        }
    }
}

impl From<&TurnError> for ApiError {
    fn from(e: &TurnError) -> Self {
        let code = match e {
            TurnError::EmptyText => ErrorCode::EmptyText,
            TurnError::UnknownAttachment(_)
            | TurnError::TooManyAttachments(_)
            | TurnError::UnknownEntry(_) => ErrorCode::BadRequest,
            TurnError::TurnInProgress(_) | TurnError::Archiving(_) => ErrorCode::TurnInProgress,
            TurnError::ShuttingDown => ErrorCode::Unavailable,
            TurnError::Agent(_) => ErrorCode::AgentError,
            TurnError::AgentTimeout(_) => ErrorCode::AgentTimeout,
            TurnError::Store(StoreError::Full(_)) => ErrorCode::StoreFull,
            TurnError::Store(StoreError::Io(_)) => ErrorCode::Internal,
        };
        let message = match e {
            TurnError::Agent(m) => format!("the agent failed: {m}"),
            TurnError::AgentTimeout(m) => format!("the agent timed out: {m}"),
            TurnError::Store(StoreError::Full(_)) => {
                "the disk holding the session store is full".to_owned()
            }
            TurnError::Store(StoreError::Io(_)) => {
                "the session store could not be written".to_owned()
            }
            other => other.to_string(),
        };
        Self::new(code, message)
    }
}

impl From<TurnError> for ApiError {
    fn from(e: TurnError) -> Self {
        Self::from(&e)
    }
}

impl From<crate::store::ArchiveError> for ApiError {
    fn from(e: crate::store::ArchiveError) -> Self {
        use crate::store::ArchiveError;
        match e {
            ArchiveError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            ArchiveError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            ArchiveError::Foreign => Self::new(ErrorCode::Conflict, e.to_string()),
            ArchiveError::Store(e) => e.into(),
        }
    }
}

impl From<crate::pipeline::ArchiveRefused> for ApiError {
    fn from(e: crate::pipeline::ArchiveRefused) -> Self {
        use crate::pipeline::ArchiveRefused;
        match e {
            ArchiveRefused::Running(_) => Self::new(ErrorCode::TurnInProgress, e.to_string()),
            ArchiveRefused::Store(e) => e.into(),
        }
    }
}
