//! A serde `Deserializer` over the located tree that tracks the field path, so every error of
//! the typed decoding names the field, line and column.

use super::*;

/// An error of the typed step. `at` is the path and location of the innermost value that
/// failed; `field` is a missing field's name, appended to the path when reported.
#[derive(Debug)]
pub(super) struct DeError {
    pub(super) problem: Problem,
    pub(super) field: Option<&'static str>,
    pub(super) at: Option<(Vec<PathSeg>, Option<Loc>)>,
}

impl DeError {
    pub(super) fn new(problem: Problem) -> DeError {
        DeError {
            problem,
            field: None,
            at: None,
        }
    }

    /// Locates the error at `path`, unless a deeper value already did.
    pub(super) fn or_at(mut self, path: &[PathSeg], loc: Option<Loc>) -> DeError {
        if self.at.is_none() {
            self.at = Some((path.to_vec(), loc));
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.problem, f)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(Problem::Other(msg.to_string()))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(Problem::InvalidType {
            expected: exp.to_string(),
            found: unexp.to_string(),
        })
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(Problem::Other(format!(
            "invalid value {unexp}; expected {exp}"
        )))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError::new(Problem::Other(format!(
            "invalid length {len}; expected {exp}"
        )))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(Problem::UnknownValue {
            value: variant.to_owned(),
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(Problem::UnknownField {
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            problem: Problem::MissingField,
            field: Some(field),
            at: None,
        }
    }

    fn duplicate_field(_field: &'static str) -> Self {
        DeError::new(Problem::DuplicateField)
    }
}

pub(super) fn child(path: &[PathSeg], seg: PathSeg) -> Vec<PathSeg> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path);
    p.push(seg);
    p
}

/// Deserializes one node; `path` is where it is.
pub(super) struct De<'n> {
    pub(super) node: &'n Node,
    pub(super) path: Vec<PathSeg>,
}

impl De<'_> {
    pub(super) fn mismatch(&self, expected: &str) -> DeError {
        let mut found = self.node.describe();
        if expected == "a string" && matches!(self.node.value, Value::Number(_) | Value::Bool(_)) {
            found.push_str(" (quote it to make it a string)");
        }
        DeError::new(Problem::InvalidType {
            expected: expected.to_owned(),
            found,
        })
        .or_at(&self.path, self.node.loc)
    }
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    match n.as_f64() {
                        Some(f) => visitor.visit_f64(f),
                        None => Err(DeError::new(Problem::Other(format!(
                            "the number {n} is out of range"
                        )))),
                    }
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path: &self.path,
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        result.map_err(|e: DeError| e.or_at(&self.path, self.node.loc))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Bool(b) => visitor
                .visit_bool(*b)
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a boolean")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor
                .visit_str(s)
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path.clone(), self.node.loc);
        let result = match &self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        };
        result.map_err(|e: DeError| e.or_at(&path, loc))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor
                .visit_unit()
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path.clone(), self.node.loc);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.or_at(&path, loc))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor
                .visit_seq(SeqDe {
                    items: items.iter().enumerate(),
                    path: &self.path,
                })
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(MapDe {
                    entries: entries.iter(),
                    value: None,
                    path: &self.path,
                })
                .map_err(|e: DeError| e.or_at(&self.path, self.node.loc)),
            _ => Err(self.mismatch("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    /// Only operations are enums in the file's mapping form: `{add_column: {...}}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) if entries.len() == 1 => {
                let entry = &entries[0];
                visitor
                    .visit_enum(EnumDe {
                        entry,
                        path: &self.path,
                    })
                    .map_err(|e: DeError| e.or_at(&self.path, self.node.loc))
            }
            _ => Err(DeError::new(Problem::NotAnOperation {
                found: self.node.describe(),
            })
            .or_at(&self.path, self.node.loc)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf
    }
}

pub(super) struct SeqDe<'a> {
    pub(super) items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    pub(super) path: &'a [PathSeg],
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = child(self.path, PathSeg::Index(i));
        seed.deserialize(De {
            node,
            path: path.clone(),
        })
        .map(Some)
        .map_err(|e: DeError| e.or_at(&path, node.loc))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

pub(super) struct MapDe<'a> {
    pub(super) entries: std::slice::Iter<'a, Entry>,
    pub(super) value: Option<&'a Entry>,
    pub(super) path: &'a [PathSeg],
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let path = child(self.path, PathSeg::Key(entry.key.clone()));
        seed.deserialize(KeyDe {
            key: &entry.key,
            path: &path,
            loc: entry.key_loc,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self.value.take().ok_or_else(|| {
            DeError::new(Problem::Other("a value was read before its key".to_owned()))
        })?;
        let path = child(self.path, PathSeg::Key(entry.key.clone()));
        seed.deserialize(De {
            node: &entry.value,
            path: path.clone(),
        })
        .map_err(|e: DeError| e.or_at(&path, entry.value.loc))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Deserializes a mapping key (a field name, a column name, an operation name).
pub(super) struct KeyDe<'a> {
    pub(super) key: &'a str,
    pub(super) path: &'a [PathSeg],
    pub(super) loc: Option<Loc>,
}

impl<'de> Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor
            .visit_str(self.key)
            .map_err(|e: DeError| e.or_at(self.path, self.loc))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path, self.loc);
        visitor
            .visit_some(self)
            .map_err(|e: DeError| e.or_at(path, loc))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (path, loc) = (self.path, self.loc);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.or_at(path, loc))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// An operation: the single entry of its mapping.
pub(super) struct EnumDe<'a> {
    pub(super) entry: &'a Entry,
    pub(super) path: &'a [PathSeg],
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = De<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, De<'a>), DeError> {
        let path = child(self.path, PathSeg::Key(self.entry.key.clone()));
        let variant = seed
            .deserialize(KeyDe {
                key: &self.entry.key,
                path: &path,
                loc: self.entry.key_loc,
            })
            .map_err(|mut e| {
                if let Problem::UnknownValue { expected, .. } = e.problem {
                    e.problem = Problem::UnknownOperation { expected };
                }
                e
            })?;
        Ok((
            variant,
            De {
                node: &self.entry.value,
                path,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for De<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.node.value {
            Value::Null => Ok(()),
            _ => Err(self.mismatch("null")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let (path, loc) = (self.path.clone(), self.node.loc);
        seed.deserialize(self)
            .map_err(|e: DeError| e.or_at(&path, loc))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }
}
