//! A serde `Serializer` that writes JSON exactly as `serde_json::to_string_pretty` writes the
//! `serde_json::Value` of the same data (two-space indent, object keys sorted, a later duplicate
//! key winning, `f32` widened to `f64`, non-finite numbers as `null`), without building the
//! `Value`: sequences go straight to the writer; only the entries of one object at a time are
//! held, as text, to be sorted.

use std::collections::BTreeMap;
use std::io::Write;

use serde::ser::{self, Error as _, Serialize};
use serde_json::Error;

/// Writes `value` at nesting level `indent` (its first line is not indented: the caller has
/// placed the cursor).
pub fn write_value<W: Write, T: Serialize + ?Sized>(
    out: &mut W,
    indent: usize,
    value: &T,
) -> Result<(), Error> {
    value.serialize(Pretty { out, indent })
}

/// Writes a line break and the indentation of level `indent`.
pub fn newline<W: Write>(out: &mut W, indent: usize) -> Result<(), Error> {
    out.write_all(b"\n").map_err(Error::io)?;
    for _ in 0..indent {
        out.write_all(b"  ").map_err(Error::io)?;
    }
    Ok(())
}

/// Writes `"key": ` with the key escaped.
pub fn key<W: Write>(out: &mut W, key: &str) -> Result<(), Error> {
    serde_json::to_writer(&mut *out, key)?;
    out.write_all(b": ").map_err(Error::io)
}

struct Pretty<'a, W> {
    out: &'a mut W,
    indent: usize,
}

impl<W: Write> Pretty<'_, W> {
    fn raw(self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes).map_err(Error::io)
    }

    fn display(self, v: impl std::fmt::Display) -> Result<(), Error> {
        write!(self.out, "{v}").map_err(Error::io)
    }
}

/// Objects: entries rendered one by one into text, sorted by key when the object ends.
struct Object<'a, W> {
    out: &'a mut W,
    indent: usize,
    entries: BTreeMap<String, Vec<u8>>,
    next_key: Option<String>,
    /// For a variant: the name the object is wrapped in (`{"Variant": {...}}`).
    variant: Option<&'static str>,
}

impl<'a, W: Write> Object<'a, W> {
    fn new(out: &'a mut W, indent: usize, variant: Option<&'static str>) -> Self {
        Self {
            out,
            indent,
            entries: BTreeMap::new(),
            next_key: None,
            variant,
        }
    }

    /// Renders a value at the level of this object's entries.
    fn entry<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), Error> {
        let mut text = Vec::new();
        let level = self.indent + 1 + usize::from(self.variant.is_some());
        write_value(&mut text, level, value)?;
        self.entries.insert(key, text);
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        let Self {
            out,
            indent,
            entries,
            variant,
            ..
        } = self;
        if let Some(name) = variant {
            out.write_all(b"{").map_err(Error::io)?;
            newline(out, indent + 1)?;
            key(out, name)?;
            write_entries(out, indent + 1, &entries)?;
            newline(out, indent)?;
            out.write_all(b"}").map_err(Error::io)
        } else {
            write_entries(out, indent, &entries)
        }
    }
}

fn write_entries<W: Write>(
    out: &mut W,
    indent: usize,
    entries: &BTreeMap<String, Vec<u8>>,
) -> Result<(), Error> {
    if entries.is_empty() {
        return out.write_all(b"{}").map_err(Error::io);
    }
    out.write_all(b"{").map_err(Error::io)?;
    for (i, (name, text)) in entries.iter().enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(Error::io)?;
        }
        newline(out, indent + 1)?;
        key(out, name)?;
        out.write_all(text).map_err(Error::io)?;
    }
    newline(out, indent)?;
    out.write_all(b"}").map_err(Error::io)
}

/// Sequences: elements written as they come.
struct Seq<'a, W> {
    out: &'a mut W,
    indent: usize,
    empty: bool,
    /// For a tuple variant: `{"Variant": [...]}`.
    variant: bool,
}

impl<'a, W: Write> Seq<'a, W> {
    fn new(out: &'a mut W, indent: usize, variant: Option<&'static str>) -> Result<Self, Error> {
        let (indent, variant) = match variant {
            Some(name) => {
                out.write_all(b"{").map_err(Error::io)?;
                newline(out, indent + 1)?;
                key(out, name)?;
                (indent + 1, true)
            }
            None => (indent, false),
        };
        out.write_all(b"[").map_err(Error::io)?;
        Ok(Self {
            out,
            indent,
            empty: true,
            variant,
        })
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.empty {
            self.out.write_all(b",").map_err(Error::io)?;
        }
        self.empty = false;
        newline(self.out, self.indent + 1)?;
        write_value(self.out, self.indent + 1, value)
    }

    fn finish(self) -> Result<(), Error> {
        if !self.empty {
            newline(self.out, self.indent)?;
        }
        self.out.write_all(b"]").map_err(Error::io)?;
        if self.variant {
            newline(self.out, self.indent - 1)?;
            self.out.write_all(b"}").map_err(Error::io)?;
        }
        Ok(())
    }
}

impl<'a, W: Write> ser::Serializer for Pretty<'a, W> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a, W>;
    type SerializeTuple = Seq<'a, W>;
    type SerializeTupleStruct = Seq<'a, W>;
    type SerializeTupleVariant = Seq<'a, W>;
    type SerializeMap = Object<'a, W>;
    type SerializeStruct = Object<'a, W>;
    type SerializeStructVariant = Object<'a, W>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.raw(if v { b"true" } else { b"false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        // A `Value` holds every float as an f64.
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if v.is_finite() {
            serde_json::to_writer(self.out, &v)
        } else {
            self.raw(b"null")
        }
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        serde_json::to_writer(self.out, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut seq = Seq::new(self.out, self.indent, None)?;
        for b in v {
            seq.element(b)?;
        }
        seq.finish()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.raw(b"null")
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let mut object = Object::new(self.out, self.indent, None);
        object.entry(variant.to_owned(), value)?;
        object.finish()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a, W>, Error> {
        Seq::new(self.out, self.indent, None)
    }
    fn serialize_tuple(self, _: usize) -> Result<Seq<'a, W>, Error> {
        Seq::new(self.out, self.indent, None)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Seq<'a, W>, Error> {
        Seq::new(self.out, self.indent, None)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'a, W>, Error> {
        Seq::new(self.out, self.indent, Some(variant))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a, W>, Error> {
        Ok(Object::new(self.out, self.indent, None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a, W>, Error> {
        Ok(Object::new(self.out, self.indent, None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Object<'a, W>, Error> {
        Ok(Object::new(self.out, self.indent, Some(variant)))
    }
}

/// serde's four sequence traits differ only in a method's name: each writes one array element.
macro_rules! impl_seq {
    ($($trait:ident :: $method:ident),+) => {$(
        impl<W: Write> ser::$trait for Seq<'_, W> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )+};
}

impl_seq!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<W: Write> ser::SerializeMap for Object<'_, W> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.next_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .next_key
            .take()
            .ok_or_else(|| Error::custom("a map value without its key"))?;
        self.entry(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// Struct fields and struct-variant fields are both one object entry.
macro_rules! impl_struct {
    ($($trait:ident),+) => {$(
        impl<W: Write> ser::$trait for Object<'_, W> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.entry(key.to_owned(), value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )+};
}

impl_struct!(SerializeStruct, SerializeStructVariant);

/// Map keys as `serde_json::Value` makes them: strings, and numbers, booleans and unit
/// variants written as strings.
struct KeySerializer;

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_f64(self, _: f64) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(Error::custom("key must be a string"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error::custom("key must be a string"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both<T: Serialize>(value: &T) -> (String, String) {
        let mut out = Vec::new();
        write_value(&mut out, 0, value).unwrap();
        let reference =
            serde_json::to_string_pretty(&serde_json::to_value(value).unwrap()).unwrap();
        (String::from_utf8(out).unwrap(), reference)
    }

    #[derive(serde::Serialize)]
    enum E {
        Unit,
        New(u8),
        Tuple(u8, String),
        Struct { z: f32, a: Option<f64> },
    }

    #[derive(serde::Serialize)]
    struct S {
        zeta: Vec<E>,
        alpha: BTreeMap<i32, String>,
        empty: Vec<u8>,
        none: (),
        bytes: serde_bytes_like::Bytes,
        nested: serde_json::Value,
    }

    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn writes_what_to_string_pretty_writes_for_the_value() {
        let value = S {
            zeta: vec![
                E::Unit,
                E::New(7),
                E::Tuple(1, "t\"\n\u{1}é".to_owned()),
                E::Struct {
                    z: 0.1,
                    a: Some(f64::NAN),
                },
                E::Struct { z: 1.0, a: None },
            ],
            alpha: [(10, "ten".to_owned()), (-2, "minus".to_owned())].into(),
            empty: vec![],
            none: (),
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            nested: json!({"b": [[], {}, [1, 2.5, -3]], "a": {"y": null, "x": true}, "": "k"}),
        };
        let (ours, reference) = both(&value);
        assert_eq!(ours, reference);
        let (ours, reference) = both(&json!([]));
        assert_eq!(ours, reference);
        let (ours, reference) = both(&"plain");
        assert_eq!(ours, reference);
    }

    #[test]
    fn a_later_duplicate_key_wins_as_in_a_value() {
        struct Dup;
        impl Serialize for Dup {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeMap as _;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("k", &1)?;
                m.serialize_entry("a", &2)?;
                m.serialize_entry("k", &3)?;
                m.end()
            }
        }
        let (ours, reference) = both(&Dup);
        assert_eq!(ours, reference);
    }
}
