//! `GET /webchat/checks`, `GET /webchat/checks/{name}` and
//! `POST /webchat/checks/{name}/run`: thin handlers over [`crate::checks`].
//! Nothing here creates or changes a command: checks come from the owner's
//! config file only.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use loopchat_proto::{CheckDetailResponse, CheckRunResponse, ChecksResponse, ErrorCode};

use super::AppState;
use super::error::ApiError;
use super::extract::Authed;
use crate::checks::RunError;

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        let code = match e {
            RunError::Unknown(_) => ErrorCode::NotFound,
            RunError::Running(_) => ErrorCode::CheckRunning,
        };
        ApiError::new(code, e.to_string())
    }
}

#[utoipa::path(
    get,
    path = "/webchat/checks",
    tag = "checks",
    summary = "The configured checks: status, last run, next run",
    description = "Checks are declared in `config.toml` (`[[checks]]`) only. Main token only.",
    responses(
        (status = 200, description = "The checks, in config order", body = ChecksResponse),
        (status = 403, description = "`forbidden`: a scoped (notify-only) token", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(_: Authed, State(state): State<AppState>) -> Json<ChecksResponse> {
    Json(ChecksResponse {
        ok: true,
        checks: state.checks.list(),
    })
}

#[utoipa::path(
    get,
    path = "/webchat/checks/{name}",
    // `detail` alone is also the other module's: an operation id is the document's, not the module's
    operation_id = "check_detail",
    tag = "checks",
    summary = "One check and its kept runs (the last 50, oldest first)",
    params(("name" = String, Path, description = "The check's name")),
    responses(
        (status = 200, description = "The check", body = CheckDetailResponse),
        (status = 404, description = "`not_found`: no such check", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn detail(
    _: Authed,
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CheckDetailResponse>, ApiError> {
    let name = super::extract::path_segment(name)?;
    let (check, runs) = state.checks.detail(&name).ok_or(RunError::Unknown(name))?;
    Ok(Json(CheckDetailResponse {
        ok: true,
        check,
        runs,
    }))
}

#[utoipa::path(
    post,
    path = "/webchat/checks/{name}/run",
    tag = "checks",
    summary = "Run a configured check now",
    description = "Answers when the run has finished (at most the check's timeout plus a few \
                   seconds), with the run; its alert, if its rule raises one, is posted \
                   before. The run goes on if the client hangs up. No body.",
    params(("name" = String, Path, description = "The check's name")),
    responses(
        (status = 200, description = "The finished run", body = CheckRunResponse),
        (status = 404, description = "`not_found`: no such check", body = loopchat_proto::ErrorBody),
        (status = 409, description = "`check_running`: it is running now", body = loopchat_proto::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn run(
    _: Authed,
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CheckRunResponse>, ApiError> {
    let name = super::extract::path_segment(name)?;
    let run = state.checks.run_now(&name).await?;
    Ok(Json(CheckRunResponse { ok: true, run }))
}
