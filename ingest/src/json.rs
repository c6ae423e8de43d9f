//! Projection of JSON log lines: pull a fixed set of (possibly nested) fields out of one JSON
//! object in a single pass, borrowing unescaped strings from the line.
//!
//! Every JSON gateway format is a table of candidate paths per event field (see
//! [`crate::formats::json`]); this module is the one walker they share. Fields that are not
//! wanted are skipped without being built, which keeps parsing near serde_json's raw speed.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A leaf value of the projection.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl<'a> Scalar<'a> {
    /// The value as text: strings as they are, numbers written out.
    pub fn into_text(self) -> Cow<'a, str> {
        match self {
            Scalar::Str(s) => s,
            Scalar::I64(v) => Cow::Owned(v.to_string()),
            Scalar::U64(v) => Cow::Owned(v.to_string()),
            Scalar::F64(v) => Cow::Owned(v.to_string()),
            Scalar::Bool(v) => Cow::Borrowed(if v { "true" } else { "false" }),
        }
    }

    /// The value as a number; strings are read as numbers (gateways often quote them).
    /// `Ok(None)` for placeholders such as `"-"` or `""`.
    pub fn as_f64(&self) -> Result<Option<f64>, NotANumber> {
        match self {
            Scalar::I64(v) => Ok(Some(*v as f64)),
            Scalar::U64(v) => Ok(Some(*v as f64)),
            Scalar::F64(v) => Ok(Some(*v)),
            Scalar::Bool(_) => Err(NotANumber),
            Scalar::Str(s) => match crate::record::present(s) {
                None => Ok(None),
                Some(t) => t.parse::<f64>().map(Some).map_err(|_| NotANumber),
            },
        }
    }
}

/// A value that should have been a number was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotANumber;

/// A compiled set of paths; each path owns one output slot, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    root: Node,
    slots: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<Child>,
    /// Indexes into `children` by [`bucket`] of the key: a line's keys are looked up here
    /// instead of comparing against every wanted key.
    buckets: Vec<Vec<u16>>,
}

const BUCKETS: usize = 64;

fn bucket(key: &str) -> usize {
    let b = key.as_bytes();
    let (first, last) = (
        b.first().copied().unwrap_or(0),
        b.last().copied().unwrap_or(0),
    );
    (b.len().wrapping_mul(31) ^ usize::from(first).wrapping_mul(7) ^ usize::from(last)) % BUCKETS
}

impl Node {
    fn find(&self, key: &str) -> Option<&Child> {
        let ids = self.buckets.get(bucket(key))?;
        ids.iter()
            .map(|&i| &self.children[usize::from(i)])
            .find(|c| &*c.key == key)
    }

    fn index(&mut self) {
        self.buckets = vec![Vec::new(); BUCKETS];
        for (i, c) in self.children.iter_mut().enumerate() {
            self.buckets[bucket(&c.key)].push(i as u16);
            if let Some(n) = &mut c.nested {
                n.index();
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Child {
    key: Box<str>,
    slot: Option<usize>,
    nested: Option<Node>,
}

impl Projection {
    /// Compiles `paths` (dot-separated keys, e.g. `request.headers.user-agent`). The slot of a
    /// path is its index in `paths`; a path given twice shares the first one's slot.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> (Self, Vec<usize>) {
        let mut p = Projection::default();
        let mut slot_of = Vec::with_capacity(paths.len());
        let mut seen: Vec<&str> = Vec::new();
        for path in paths {
            let path = path.as_ref();
            if let Some(i) = seen.iter().position(|s| *s == path) {
                slot_of.push(slot_of[i]);
                seen.push(path);
                continue;
            }
            seen.push(path);
            let slot = p.slots;
            p.slots += 1;
            slot_of.push(slot);
            let mut node = &mut p.root;
            let parts: Vec<&str> = path.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let idx = match node.children.iter().position(|c| &*c.key == *part) {
                    Some(idx) => idx,
                    None => {
                        node.children.push(Child {
                            key: (*part).into(),
                            slot: None,
                            nested: None,
                        });
                        node.children.len() - 1
                    }
                };
                let child = &mut node.children[idx];
                if last {
                    child.slot.get_or_insert(slot);
                    break;
                }
                node = child.nested.get_or_insert_with(Node::default);
            }
        }
        p.root.index();
        (p, slot_of)
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Walks `line` once and fills `out` (length [`slots`](Self::slots)); `out` is cleared first.
    pub fn extract<'a>(
        &self,
        line: &'a str,
        out: &mut Vec<Option<Scalar<'a>>>,
    ) -> Result<(), serde_json::Error> {
        out.clear();
        out.resize(self.slots, None);
        let mut de = serde_json::Deserializer::from_str(line);
        ObjectSeed {
            node: &self.root,
            out,
        }
        .deserialize(&mut de)?;
        de.end()
    }
}

struct ObjectSeed<'p, 's, 'a> {
    node: &'p Node,
    out: &'s mut Vec<Option<Scalar<'a>>>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let key: &str = &key.0;
            let Some(child) = self.node.find(key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match (&child.nested, child.slot) {
                (Some(nested), _) => map.next_value_seed(ValueSeed {
                    nested,
                    slot: child.slot,
                    out: self.out,
                })?,
                (None, Some(slot)) => {
                    let v = map.next_value_seed(ScalarSeed)?;
                    if self.out[slot].is_none() {
                        self.out[slot] = v;
                    }
                }
                (None, None) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A value that is an object to descend into, or else a scalar for `slot`.
struct ValueSeed<'p, 's, 'a> {
    nested: &'p Node,
    slot: Option<usize>,
    out: &'s mut Vec<Option<Scalar<'a>>>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ValueSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ValueSeed<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        ObjectSeed {
            node: self.nested,
            out: self.out,
        }
        .visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let v = ScalarVisitor.visit_seq(seq)?;
        self.set(v);
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.set(Some(Scalar::Str(Cow::Borrowed(v))));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.set(Some(Scalar::Str(Cow::Owned(v.to_owned()))));
        Ok(())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.set(Some(Scalar::Str(Cow::Owned(v))));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.set(Some(Scalar::I64(v)));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.set(Some(Scalar::U64(v)));
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.set(Some(Scalar::F64(v)));
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.set(Some(Scalar::Bool(v)));
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

impl<'a> ValueSeed<'_, '_, 'a> {
    fn set(self, v: Option<Scalar<'a>>) {
        if let Some(slot) = self.slot
            && self.out[slot].is_none()
        {
            self.out[slot] = v;
        }
    }
}

/// Reads one leaf. Objects become `None`; arrays give their first scalar element (gateways log
/// repeated headers as arrays).
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Option<Scalar<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Option<Scalar<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(Cow::Owned(v))))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::I64(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::U64(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::F64(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Bool(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first = None;
        while let Some(v) = seq.next_element_seed(ScalarSeed)? {
            if first.is_none() {
                first = v;
            }
        }
        Ok(first)
    }
}

/// A string that borrows from the input when it has no escapes (serde's `Cow<str>` always
/// allocates).
pub struct CowStr<'de>(pub Cow<'de, str>);

impl<'de: 'a, 'a> de::Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_nested_and_flat_paths() {
        let (p, slots) = Projection::new(&["a", "b.c", "b.d", "e", "a"]);
        assert_eq!(slots, vec![0, 1, 2, 3, 0]);
        let mut out = Vec::new();
        let line =
            r#"{"x":{"y":[1,2]},"a":"va","b":{"c":7,"d":["h1","h2"],"z":{}},"e":null,"f":1.5}"#;
        p.extract(line, &mut out).unwrap();
        assert_eq!(out[0], Some(Scalar::Str(Cow::Borrowed("va"))));
        assert!(matches!(out[0], Some(Scalar::Str(Cow::Borrowed(_)))));
        assert_eq!(out[1], Some(Scalar::U64(7)));
        assert_eq!(out[2], Some(Scalar::Str("h1".into())));
        assert_eq!(out[3], None);
    }

    #[test]
    fn escaped_strings_are_unescaped_and_bad_json_errors() {
        let (p, _) = Projection::new(&["k"]);
        let mut out = Vec::new();
        p.extract(r#"{"k":"a\"b\u00e9"}"#, &mut out).unwrap();
        assert_eq!(out[0], Some(Scalar::Str("a\"bé".into())));
        assert!(p.extract(r#"{"k":"a""#, &mut out).is_err());
        assert!(p.extract(r#"[1,2]"#, &mut out).is_err());
        assert!(p.extract(r#"{"k":1} trailing"#, &mut out).is_err());
        // a scalar where an object is expected is ignored, not an error
        let (p, _) = Projection::new(&["a.b"]);
        p.extract(r#"{"a":"flat"}"#, &mut out).unwrap();
        assert_eq!(out[0], None);
    }
}
