//! `GET /api/openapi.json`: the API description, generated from the handlers'
//! annotations and the wire types (utoipa).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Confab API",
        description = "Conversations in the caller's own partition. Every /api route but the webhook needs `Authorization: Bearer <Clerk JWT>`. Errors are `{\"error\": {code, message}}`."
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::user::get,
        routes::user::post,
        routes::conversations::list,
        routes::conversations::create,
        routes::conversations::template_update,
        routes::conversations::template_delete,
        routes::conversations::get,
        routes::conversations::update,
        routes::conversations::delete,
        routes::conversations::restore,
        routes::conversations::append,
        routes::conversations::messages,
        routes::changes::changes,
        routes::events::events,
        routes::replies::info,
        routes::replies::start,
        routes::replies::stop,
        routes::webhooks::clerk,
    ),
    // Event payloads no route returns as a body.
    components(schemas(
        confab_wire::assistant::ReplyDelta,
        confab_wire::assistant::ReplyDone
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
