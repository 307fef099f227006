//! GGUF metadata: key → value in file order, with typed getters by full key.
//!
//! Getters accept the integer widths real converters write (a count may be stored as
//! u32, i32 or u64) as long as the value fits; errors name the key, the expected and
//! the found type.

use std::collections::HashMap;

use super::value::{Array, Value};
use crate::error::Error;

#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    /// key → (index in `entries`, absolute byte offset of the key in the file)
    index: HashMap<String, (usize, u64)>,
}

/// Conversion from a metadata [`Value`] to a Rust type, used by [`Metadata::get_as`].
pub trait FromValue<'a>: Sized {
    /// What the type is called in an error ("an unsigned 32-bit integer").
    const EXPECTED: &'static str;
    fn from_value(v: &'a Value) -> Option<Self>;
}

macro_rules! int_from_value {
    ($($t:ty => $desc:literal),*) => {$(
        impl FromValue<'_> for $t {
            const EXPECTED: &'static str = $desc;
            fn from_value(v: &Value) -> Option<$t> {
                v.as_i128().and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}
int_from_value!(
    u32 => "an integer in 0..=4294967295",
    u64 => "a non-negative integer",
    i32 => "a 32-bit integer",
    i64 => "a 64-bit integer",
    usize => "a non-negative integer"
);

impl FromValue<'_> for f32 {
    const EXPECTED: &'static str = "a number (FLOAT32)";
    fn from_value(v: &Value) -> Option<f32> {
        match *v {
            Value::F32(f) => Some(f),
            Value::F64(f) => Some(f as f32),
            _ => None,
        }
    }
}

impl FromValue<'_> for f64 {
    const EXPECTED: &'static str = "a number (FLOAT64)";
    fn from_value(v: &Value) -> Option<f64> {
        match *v {
            Value::F32(f) => Some(f as f64),
            Value::F64(f) => Some(f),
            _ => None,
        }
    }
}

impl FromValue<'_> for bool {
    const EXPECTED: &'static str = "BOOL";
    fn from_value(v: &Value) -> Option<bool> {
        match *v {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a str {
    const EXPECTED: &'static str = "STRING";
    fn from_value(v: &'a Value) -> Option<&'a str> {
        match v {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a Array {
    const EXPECTED: &'static str = "ARRAY";
    fn from_value(v: &'a Value) -> Option<&'a Array> {
        match v {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a [String] {
    const EXPECTED: &'static str = "ARRAY of STRING";
    fn from_value(v: &'a Value) -> Option<&'a [String]> {
        match v {
            Value::Array(Array::String(s)) => Some(s),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a [f32] {
    const EXPECTED: &'static str = "ARRAY of FLOAT32";
    fn from_value(v: &'a Value) -> Option<&'a [f32]> {
        match v {
            Value::Array(Array::F32(s)) => Some(s),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a [i32] {
    const EXPECTED: &'static str = "ARRAY of INT32";
    fn from_value(v: &'a Value) -> Option<&'a [i32]> {
        match v {
            Value::Array(Array::I32(s)) => Some(s),
            _ => None,
        }
    }
}

impl Metadata {
    pub(crate) fn insert(&mut self, key: String, value: Value, offset: u64) {
        self.index.insert(key.clone(), (self.entries.len(), offset));
        self.entries.push((key, value));
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&(i, _)| &self.entries[i].1)
    }

    /// Absolute byte offset at which `key` is stored in the file.
    pub fn offset_of(&self, key: &str) -> Option<u64> {
        self.index.get(key).map(|&(_, o)| o)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key` converted to `T`; an error names the key if it is missing
    /// or holds another type (or a number out of `T`'s range).
    pub fn get_as<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<T, Error> {
        self.opt_as(key)?.ok_or_else(|| Error::MissingKey {
            key: key.to_string(),
        })
    }

    /// Like [`Metadata::get_as`], but a missing key is `Ok(None)`.
    pub fn opt_as<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => T::from_value(v).map(Some).ok_or_else(|| Error::WrongType {
                key: key.to_string(),
                expected: T::EXPECTED.to_string(),
                found: v.describe(),
            }),
        }
    }

    pub fn get_u32(&self, key: &str) -> Result<u32, Error> {
        self.get_as(key)
    }
    pub fn get_u64(&self, key: &str) -> Result<u64, Error> {
        self.get_as(key)
    }
    pub fn get_f32(&self, key: &str) -> Result<f32, Error> {
        self.get_as(key)
    }
    pub fn get_bool(&self, key: &str) -> Result<bool, Error> {
        self.get_as(key)
    }
    pub fn get_str(&self, key: &str) -> Result<&str, Error> {
        self.get_as(key)
    }
    pub fn get_array(&self, key: &str) -> Result<&Array, Error> {
        self.get_as(key)
    }
}
