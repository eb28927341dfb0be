//! Values and the generators of query parameters.

use super::*;

/// A parameter value or a value read back. Binds to `int2`/`int4`/`int8` (range-checked),
/// `float4`/`float8` and the text types, whatever the server infers for the `$n`, so one template
/// serves both sides of an `int` → `bigint` migration. Cast in the SQL (`$1::numeric`) for others.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    /// The value as an integer key, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Text(s) => s.parse().ok(),
            Value::Null => None,
        }
    }

    /// Equal, or equal once rendered as text (an id written as `Int` and read back as `Text`).
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Text(b)) | (Value::Text(b), Value::Int(a)) => {
                a.to_string() == *b
            }
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Text(s) => f.write_str(&quote_literal(s)),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

pub(super) type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Value::Text(s) => {
                if <&str as ToSql>::accepts(ty) {
                    s.as_str().to_sql(ty, out)
                } else {
                    Err(format!(
                        "cannot bind the text {} to a parameter of type {ty}",
                        quote_literal(s)
                    )
                    .into())
                }
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8
        ) || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        match *ty {
            Type::INT2 => Ok(Value::Int(i16::from_sql(ty, raw)?.into())),
            Type::INT4 => Ok(Value::Int(i32::from_sql(ty, raw)?.into())),
            Type::INT8 => Ok(Value::Int(i64::from_sql(ty, raw)?)),
            _ => Ok(Value::Text(<&str>::from_sql(ty, raw)?.to_owned())),
        }
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8) || <&str as FromSql>::accepts(ty)
    }
}

/// How one `$n` parameter is generated for each query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamGen {
    /// A random id in `[1, high]`, `high` being the highest id that exists or was handed out:
    /// [`WorkloadConfig::max_id`] at start, raised by every [`ParamGen::FreshId`].
    ExistingId,
    /// The next id from the counter shared by all clients (`max_id + 1`, `+ 2`, ...), for inserts.
    FreshId,
    /// A random integer in `[low, high]`.
    Int { low: i64, high: i64 },
    /// `prefix`, `len` random alphanumeric characters, `suffix`.
    Text {
        prefix: String,
        len: usize,
        suffix: String,
    },
    /// Always this value.
    Const(Value),
}

impl ParamGen {
    /// `prefix` followed by `len` random alphanumeric characters.
    pub fn text(prefix: impl Into<String>, len: usize) -> Self {
        ParamGen::Text {
            prefix: prefix.into(),
            len,
            suffix: String::new(),
        }
    }

    /// A random address at example.com.
    pub fn email() -> Self {
        ParamGen::Text {
            prefix: String::new(),
            len: 10,
            suffix: "@example.com".to_owned(),
        }
    }

    pub(super) fn is_int(&self) -> bool {
        match self {
            ParamGen::ExistingId | ParamGen::FreshId | ParamGen::Int { .. } => true,
            ParamGen::Const(v) => matches!(v, Value::Int(_)),
            ParamGen::Text { .. } => false,
        }
    }

    pub(super) fn generate(&self, rng: &mut StdRng, ids: &AtomicI64) -> Value {
        match self {
            ParamGen::ExistingId => {
                let high = ids.load(Ordering::Relaxed).max(1);
                Value::Int(rng.random_range(1..=high))
            }
            ParamGen::FreshId => Value::Int(ids.fetch_add(1, Ordering::Relaxed).saturating_add(1)),
            ParamGen::Int { low, high } => Value::Int(rng.random_range(*low..=*high)),
            ParamGen::Text {
                prefix,
                len,
                suffix,
            } => {
                let mut s = String::with_capacity(prefix.len() + len + suffix.len());
                s.push_str(prefix);
                s.extend(
                    Alphanumeric
                        .sample_iter(&mut *rng)
                        .take(*len)
                        .map(char::from),
                );
                s.push_str(suffix);
                Value::Text(s)
            }
            ParamGen::Const(v) => v.clone(),
        }
    }
}
