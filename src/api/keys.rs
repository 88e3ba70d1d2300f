//! The key in the path of a route on one thing: the `{name}` of a queue or a schedule,
//! the `{id}` of a job or a workflow.
//!
//! Each key type is an extractor that checks its segment, so a handler receives it
//! valid, and documents itself as the route's path parameter (`params(QueuePath)`), so
//! the name rule and its pattern ([`NAME_PATTERN`]) are written once, not per route. A
//! refused segment is answered as the handlers always answered it: 400 `invalid_field`
//! naming `name` (`model::check_name`), or 400 `invalid_path` naming `id`
//! ([`parse_id`]).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Required, Schema};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, parse_id};
use crate::model::{self, NAME_PATTERN};

/// The `{name}` of a route on one queue.
#[derive(Debug, Clone)]
pub struct QueuePath(pub String);

/// The `{name}` of a route on one schedule.
#[derive(Debug, Clone)]
pub struct SchedulePath(pub String);

/// The `{id}` of a route on one job.
#[derive(Debug, Clone, Copy)]
pub struct JobPath(pub Uuid);

/// The `{id}` of a route on one workflow.
#[derive(Debug, Clone, Copy)]
pub struct WorkflowPath(pub Uuid);

/// A route's key, checked from its path segment. The dashboard, which calls the `/v1`
/// handlers with the segment of its own route, checks it with the same rule.
pub trait PathKey: Sized + Send {
    /// The key in `segment`, or the refusal the route answers with.
    fn parse(segment: String) -> ApiResult<Self>;
}

/// What a key holds (a name or an id): its segment's name in the route, its check and
/// its schema.
trait Segment: Sized {
    /// `name` in `/v1/queues/{name}`.
    const NAME: &'static str;
    fn check(segment: String) -> ApiResult<Self>;
    fn schema() -> RefOr<Schema>;
}

impl Segment for String {
    const NAME: &'static str = "name";

    fn check(segment: String) -> ApiResult<String> {
        model::check_name(Self::NAME, &segment)?;
        Ok(segment)
    }

    fn schema() -> RefOr<Schema> {
        let name = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(NAME_PATTERN));
        RefOr::T(Schema::Object(name.build()))
    }
}

impl Segment for Uuid {
    const NAME: &'static str = "id";

    fn check(segment: String) -> ApiResult<Uuid> {
        parse_id(Self::NAME, &segment)
    }

    fn schema() -> RefOr<Schema> {
        let id = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
        RefOr::T(Schema::Object(id.build()))
    }
}

/// The path parameter that a key holding a `V` is, described as `description`.
fn parameter<V: Segment>(description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(V::NAME)
        .parameter_in(ParameterIn::Path)
        .description(Some(description))
        .required(Required::True)
        .schema(Some(V::schema()))
        .build()
}

/// The segment of the route's one path parameter, unchecked.
async fn segment<S: Send + Sync>(parts: &mut Parts, state: &S) -> ApiResult<String> {
    let Path(segment) = Path::<String>::from_request_parts(parts, state).await?;
    Ok(segment)
}

/// Makes each key type a [`PathKey`], an extractor and a documented path parameter.
/// Written as a macro only because axum's and utoipa's traits cannot be implemented for
/// every `PathKey` at once (they are foreign to this crate); the logic is in
/// [`Segment`], [`segment`] and [`parameter`].
macro_rules! path_keys {
    ($($key:ident($value:ty), $description:literal;)+) => {$(
        impl PathKey for $key {
            fn parse(segment: String) -> ApiResult<Self> {
                <$value as Segment>::check(segment).map($key)
            }
        }

        impl<S: Send + Sync> FromRequestParts<S> for $key {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
                $key::parse(segment(parts, state).await?)
            }
        }

        impl IntoParams for $key {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![parameter::<$value>($description)]
            }
        }
    )+};
}

path_keys! {
    QueuePath(String), "Queue name";
    SchedulePath(String), "Schedule name";
    JobPath(Uuid), "Job id";
    WorkflowPath(Uuid), "Workflow id";
}

/// A route's key and its JSON body, the body read first: a request with a malformed
/// body and a bad key is refused for its body, as these routes always did (a key
/// extractor placed before the body would be checked first).
#[derive(Debug)]
pub struct KeyAndJson<K, T>(pub K, pub T);

impl<S: Send + Sync, K: PathKey, T: DeserializeOwned> FromRequest<S> for KeyAndJson<K, T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        let (mut parts, body) = request.into_parts();
        let segment = segment(&mut parts, state).await?;
        let Json(value) = Json::from_request(Request::from_parts(parts, body), state).await?;
        Ok(KeyAndJson(K::parse(segment)?, value))
    }
}
