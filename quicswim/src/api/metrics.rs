//! `GET /metrics`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::{prometheus, ApiError, ApiState};

pub(super) async fn scrape(State(api): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let metrics = api.node.metrics().await?;
    Ok((
        [(CONTENT_TYPE, prometheus::CONTENT_TYPE)],
        prometheus::render(&metrics),
    ))
}
