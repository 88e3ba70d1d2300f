//! One OpenAPI object for a struct made of parts: a row that embeds what its caller
//! gave (`#[serde(flatten)]`) is served as one flat object. utoipa's derive would
//! document such a struct as `allOf` of its parts, a different document from the flat
//! object the API has always published, so [`flat_schema!`] writes the flat one.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema};

/// The object with the properties and required fields of every part, in order, under
/// `description`.
pub fn object(description: &str, parts: impl IntoIterator<Item = RefOr<Schema>>) -> RefOr<Schema> {
    let mut flat = ObjectBuilder::new().description(Some(description)).build();
    for part in parts {
        match part {
            RefOr::T(Schema::Object(part)) => {
                flat.properties.extend(part.properties);
                flat.required.extend(part.required);
            }
            // Parts are structs deriving ToSchema, whose schema is an object.
            _ => unreachable!("a flat_schema! part is a struct deriving ToSchema: an object"),
        }
    }
    RefOr::T(Schema::Object(flat))
}

/// Implements `utoipa::ToSchema` for `$ty`, a struct of `#[serde(flatten)]` parts
/// (each deriving `ToSchema`), as one object named `$name`.
macro_rules! flat_schema {
    ($ty:ty as $name:literal, $description:literal, [$($part:ty),+ $(,)?]) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::model::flat_schema::object(
                    $description,
                    [$(<$part as utoipa::PartialSchema>::schema()),+],
                )
            }
        }

        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }

            fn schemas(
                schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
            ) {
                $(<$part as utoipa::ToSchema>::schemas(schemas);)+
            }
        }
    };
}
pub(crate) use flat_schema;
