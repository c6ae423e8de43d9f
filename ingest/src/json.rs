//! Projection of JSON log lines: pull a fixed set of (possibly nested) fields out of one JSON
//! object in a single pass, borrowing unescaped strings from the line.
//!
//! Every JSON gateway format is a table of candidate paths per event field (see
//! [`crate::formats::json`]); this module is the one walker they share. Fields that are not
//! wanted are skipped without being built.
//!
//! Two walkers give the same answer. [`Projection::project`], on the per-line path, reads the
//! bytes itself into [`Value`]s, which are ranges of the line and so can live in buffers reused
//! for every line ([`Projection::project_with`]). On a line without escapes or control bytes
//! (nearly all of them) a string ends at the next quote, found eight bytes at a time, then by
//! `memchr` for long strings; keys are found in a small hash table compared word by word. It
//! accepts only what it is sure serde_json accepts, with the same result; on anything else (a
//! syntax error, an exponent, a `\u` surrogate, deep nesting) it gives up and the serde_json
//! walker, [`Projection::extract`], decides, so errors and their messages are serde_json's.
//! The unit tests below check the two against each other on generated documents.

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
            Scalar::Str(s) => match (digits_f64(s), crate::record::present(s)) {
                (Some(n), _) => Ok(Some(n)),
                (None, None) => Ok(None),
                (None, Some(t)) => t.parse::<f64>().map(Some).map_err(|_| NotANumber),
            },
        }
    }
}

/// `s` as a number when it is 1 to 15 ASCII digits and nothing else: then exactly what
/// `s.parse::<f64>()` gives (every such integer is an `f64`), without the float parser.
pub(crate) fn digits_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 15 {
        return None;
    }
    let mut n = 0u64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    Some(n as f64)
}

/// A value that should have been a number was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotANumber;

/// A leaf value of [`Projection::project`]: like [`Scalar`], but strings are byte ranges, so a
/// buffer of values does not borrow the line and can be reused. `Copy` and 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Value {
    /// The path is not in the line, or is `null`, an object, or an array without scalars.
    #[default]
    Absent,
    /// `line[start..end]`: a string without escapes.
    Raw {
        start: usize,
        end: usize,
    },
    /// `text[start..end]` of the buffer given to [`Projection::project`]: an unescaped string.
    Unescaped {
        start: usize,
        end: usize,
    },
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Value {
    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Absent)
    }

    /// The value as a [`Scalar`] borrowing from `line` (and from `text`, the unescape buffer
    /// [`Projection::project`] filled); `None` when absent.
    pub fn scalar<'a>(self, line: &'a str, text: &str) -> Option<Scalar<'a>> {
        Some(match self {
            Value::Absent => return None,
            Value::Raw { start, end } => Scalar::Str(Cow::Borrowed(line.get(start..end)?)),
            Value::Unescaped { start, end } => {
                Scalar::Str(Cow::Owned(text.get(start..end)?.into()))
            }
            Value::I64(v) => Scalar::I64(v),
            Value::U64(v) => Scalar::U64(v),
            Value::F64(v) => Scalar::F64(v),
            Value::Bool(v) => Scalar::Bool(v),
        })
    }
}

/// A compiled set of paths; each path owns one output slot, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    root: Node,
    slots: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<Child>,
    /// Open-addressed hash table of the children's keys, at most a quarter full: a line's
    /// keys are looked up here, and a key that is not wanted almost always meets an empty
    /// cell at once. A cell holds what a lookup compares, so a hit costs one load.
    table: Vec<Cell>,
    /// `64 - log2(table.len())`.
    shift: u32,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    words: Words,
    len: u32,
    /// Index into `children`, [`EMPTY`] for a free cell.
    child: u32,
}

const EMPTY: u32 = u32::MAX;

/// A key's first, second and last eight bytes (zero where the key is shorter): with the
/// length they identify keys of up to 24 bytes, so most keys compare in three instructions;
/// longer ones are also compared in full.
type Words = [u64; 3];

/// The [`Words`] of the key `b[start..end]`. Bytes of `b` after the key may be read (and are
/// masked off) when that saves a copy.
fn words(b: &[u8], start: usize, end: usize) -> Words {
    let load = |at: usize| {
        b.get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(0, |c| u64::from_le_bytes(*c))
    };
    let len = end - start;
    if len >= 8 {
        let mid = if len > 16 { load(start + 8) } else { 0 };
        return [load(start), mid, load(end - 8)];
    }
    let mask = (1u64 << (8 * len)) - 1;
    if b.len() >= start + 8 {
        return [load(start) & mask, 0, 0];
    }
    let mut a = [0u8; 8];
    if let Some(k) = b.get(start..end) {
        a[..len].copy_from_slice(k);
    }
    [u64::from_le_bytes(a), 0, 0]
}

fn hash(w: &Words, len: usize, shift: u32) -> usize {
    let h = (w[0] ^ w[1].rotate_left(17) ^ w[2].rotate_left(29) ^ (len as u64).rotate_left(53))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> shift) as usize
}

impl Node {
    /// The child named `key`, whose [`Words`] are `w`.
    #[inline(always)]
    fn find(&self, key: &[u8], w: &Words) -> Option<&Child> {
        let mask = self.table.len().wrapping_sub(1);
        let mut h = hash(w, key.len(), self.shift);
        loop {
            let cell = self.table.get(h & mask)?;
            if cell.child == EMPTY {
                return None;
            }
            if cell.words == *w && cell.len as usize == key.len() {
                let c = self.children.get(cell.child as usize)?;
                if key.len() <= 24 || c.key.as_bytes() == key {
                    return Some(c);
                }
            }
            h = h.wrapping_add(1);
        }
    }

    fn find_str(&self, key: &str) -> Option<&Child> {
        let k = key.as_bytes();
        self.find(k, &words(k, 0, k.len()))
    }

    fn index(&mut self) {
        let size = (self.children.len() * 4).next_power_of_two().max(8);
        self.shift = 64 - size.trailing_zeros();
        let free = Cell {
            words: [0; 3],
            len: 0,
            child: EMPTY,
        };
        self.table = vec![free; size];
        for (i, c) in self.children.iter_mut().enumerate() {
            let w = words(c.key.as_bytes(), 0, c.key.len());
            let mut h = hash(&w, c.key.len(), self.shift);
            while self.table[h & (size - 1)].child != EMPTY {
                h = h.wrapping_add(1);
            }
            self.table[h & (size - 1)] = Cell {
                words: w,
                // keys longer than 4 GiB cannot be matched (nor configured)
                len: u32::try_from(c.key.len()).unwrap_or(u32::MAX),
                child: i as u32,
            };
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

    /// Walks `line` once and fills `out` (length [`slots`](Self::slots)), like
    /// [`extract`](Self::extract) but without building strings: a string without escapes is a
    /// range of `line`, one with escapes is unescaped into `text`. `out` and `text` are
    /// overwritten (`text` is cleared), so one pair can serve every line.
    ///
    /// The result, and the error for a line that is not a JSON object, are `extract`'s.
    pub fn project(
        &self,
        line: &str,
        out: &mut [Value],
        text: &mut String,
    ) -> Result<(), serde_json::Error> {
        if self.project_fast(line, out, text).is_ok() {
            return Ok(());
        }
        // Not sure: serde_json decides (and words the error).
        let mut scalars = Vec::with_capacity(self.slots);
        self.extract(line, &mut scalars)?;
        out.fill(Value::Absent);
        text.clear();
        for (o, v) in out.iter_mut().zip(scalars) {
            *o = match v {
                None => Value::Absent,
                Some(Scalar::Str(s)) => {
                    let start = text.len();
                    text.push_str(&s);
                    Value::Unescaped {
                        start,
                        end: text.len(),
                    }
                }
                Some(Scalar::I64(v)) => Value::I64(v),
                Some(Scalar::U64(v)) => Value::U64(v),
                Some(Scalar::F64(v)) => Value::F64(v),
                Some(Scalar::Bool(v)) => Value::Bool(v),
            };
        }
        Ok(())
    }

    /// [`project`](Self::project) into buffers kept per thread for the next line: `f` gets
    /// the values (length [`slots`](Self::slots)) and the unescape buffer they point into.
    pub fn project_with<R>(
        &self,
        line: &str,
        f: impl FnOnce(&mut [Value], &str) -> R,
    ) -> Result<R, serde_json::Error> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<(Vec<Value>, String)> =
                const { std::cell::RefCell::new((Vec::new(), String::new())) };
        }
        let run = |(values, text): &mut (Vec<Value>, String)| {
            values.resize(self.slots, Value::Absent);
            self.project(line, values, text)?;
            let r = f(values, text);
            if text.capacity() > 1 << 16 {
                // one huge escaped line does not keep its buffer for the thread's lifetime
                *text = String::new();
            }
            Ok(r)
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => run(&mut s),
            // `f` projecting another line on this thread: fresh buffers for that one
            Err(_) => run(&mut Default::default()),
        })
    }

    /// The fast walk of [`project`](Self::project): `Err(Unsure)` when serde_json must decide.
    fn project_fast(&self, line: &str, out: &mut [Value], text: &mut String) -> Fast<()> {
        if out.len() < self.slots {
            return Err(Unsure);
        }
        out.fill(Value::Absent);
        text.clear();
        let b = line.as_bytes();
        let mut w = Walk {
            b,
            line,
            // Nearly every line: then every `"` opens or closes a string.
            plain: memchr::memchr(b'\\', b).is_none() && !has_control(b),
            out,
            text,
        };
        let i = w.ws(0);
        if b.get(i) != Some(&b'{') {
            return Err(Unsure);
        }
        let i = w.object(&self.root, i + 1, 1)?;
        if w.ws(i) == b.len() {
            Ok(())
        } else {
            Err(Unsure)
        }
    }
}

#[cfg(test)]
impl Projection {
    /// Whether the fast walker answers for `line` by itself (tests and tools).
    pub(crate) fn is_fast_for(&self, line: &str) -> bool {
        let mut out = vec![Value::Absent; self.slots];
        self.project_fast(line, &mut out, &mut String::new())
            .is_ok()
    }
}

/// The fast walker cannot vouch for the input; serde_json will decide.
#[derive(Debug)]
struct Unsure;

type Fast<T> = Result<T, Unsure>;

/// Nesting deeper than this is left to serde_json (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// Whether `b` has a byte below 0x20 (a JSON string must not; between tokens only `\t`,
/// `\n` and `\r` may appear). Written to vectorize: no early exit within 32 bytes (and only
/// this one test: with a second one in the fold, the loop is no longer vectorized).
fn has_control(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(32);
    let mut any = false;
    for c in &mut chunks {
        any |= c.iter().fold(false, |a, &x| a | (x < 0x20));
    }
    any || chunks.remainder().iter().any(|&x| x < 0x20)
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `w` equal to `c`, exact for the lowest one (which is all that
/// is used: false hits only come from borrows, which run towards higher bytes).
fn bytes_equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & (ONES << 7)
}

/// The bytes of `w` that end or interrupt a string's plain run: `"`, `\` or a control
/// character (see [`bytes_equal`]).
fn string_stops(w: u64) -> u64 {
    let ctrl = w.wrapping_sub(ONES * 0x20) & !w & (ONES << 7);
    ctrl | bytes_equal(w, b'"') | bytes_equal(w, b'\\')
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut n = 0;
    for &c in h.get(..4)? {
        n = n * 16 + char::from(c).to_digit(16)?;
    }
    Some(n)
}

/// The serde_json walker's semantics ([`ObjectSeed`], [`ValueSeed`], [`ScalarSeed`],
/// `IgnoredAny`) over bytes. Positions are passed in and out (each method takes its value's
/// first byte, or the byte just past an opening bracket, and returns the position just past
/// the value), so that the hot loop keeps them in registers.
struct Walk<'l, 'o> {
    b: &'l [u8],
    line: &'l str,
    /// The line has no `\` and no control byte: a string ends at the next quote.
    plain: bool,
    out: &'o mut [Value],
    text: &'o mut String,
}

impl Walk<'_, '_> {
    /// Past JSON whitespace, as serde_json skips it.
    #[inline(always)]
    fn ws(&self, mut i: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(i) {
            i += 1;
        }
        i
    }

    /// After a member or element at `i`: `Some(next)` past `,` and whitespace to go on, or
    /// `None` past `close` to stop (the position is then `i`'s close + 1, see `closed`).
    #[inline(always)]
    fn next_or_close(&self, i: usize, close: u8) -> Fast<Result<usize, usize>> {
        let i = match self.b.get(i) {
            Some(b',') => return Ok(Ok(self.ws(i + 1))),
            Some(&c) if c == close => return Ok(Err(i + 1)),
            _ => self.ws(i),
        };
        match self.b.get(i) {
            Some(b',') => Ok(Ok(self.ws(i + 1))),
            Some(&c) if c == close => Ok(Err(i + 1)),
            _ => Err(Unsure),
        }
    }

    /// `:` between a key and its value, with the whitespace around it.
    #[inline(always)]
    fn colon(&self, i: usize) -> Fast<usize> {
        let i = if self.b.get(i) == Some(&b':') {
            i + 1
        } else {
            let i = self.ws(i);
            if self.b.get(i) != Some(&b':') {
                return Err(Unsure);
            }
            i + 1
        };
        Ok(self.ws(i))
    }

    /// `ObjectSeed::visit_map`, from just past `{`.
    fn object(&mut self, node: &Node, i: usize, depth: u32) -> Fast<usize> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        let mut i = self.ws(i);
        if self.b.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        loop {
            if self.b.get(i) != Some(&b'"') {
                return Err(Unsure);
            }
            let start = i + 1;
            let (end, escaped) = self.string(start)?;
            let child = if escaped {
                let mut key = String::new();
                self.unescape_into(start, end, &mut key)?;
                node.find_str(&key)
            } else {
                node.find(&self.b[start..end], &words(self.b, start, end))
            };
            i = self.colon(end + 1)?;
            i = match child {
                None => self.skip(i, depth)?,
                Some(Child {
                    nested: Some(nested),
                    ..
                }) if self.b.get(i) == Some(&b'{') => self.object(nested, i + 1, depth + 1)?,
                Some(c) => self.scalar(i, depth, c.slot)?,
            };
            i = match self.next_or_close(i, b'}')? {
                Ok(next) => next,
                Err(past) => return Ok(past),
            };
        }
    }

    /// Stores `v` in `slot` unless the slot has a value already (the first one wins).
    #[inline(always)]
    fn put(&mut self, slot: Option<usize>, v: Value) {
        if let Some(s) = slot
            && let Some(o) = self.out.get_mut(s)
            && o.is_absent()
        {
            *o = v;
        }
    }

    /// Whether `slot` still wants a value.
    #[inline(always)]
    fn wants(&self, slot: Option<usize>) -> bool {
        slot.is_some_and(|s| self.out.get(s).is_some_and(Value::is_absent))
    }

    /// `ScalarSeed` (and `ValueSeed` on anything but an object): a leaf for `slot`, the first
    /// scalar of an array, nothing for `null` and objects.
    fn scalar(&mut self, i: usize, depth: u32, slot: Option<usize>) -> Fast<usize> {
        match self.b.get(i) {
            Some(b'"') => {
                let start = i + 1;
                let (end, escaped) = self.string(start)?;
                if self.wants(slot) {
                    let v = if escaped {
                        let mut text = std::mem::take(self.text);
                        let from = text.len();
                        let r = self.unescape_into(start, end, &mut text);
                        let to = text.len();
                        *self.text = text;
                        r?;
                        Value::Unescaped {
                            start: from,
                            end: to,
                        }
                    } else {
                        Value::Raw { start, end }
                    };
                    self.put(slot, v);
                }
                Ok(end + 1)
            }
            Some(b'-' | b'0'..=b'9') => self.number(i, slot),
            Some(b'{') => self.skip_object(i + 1, depth + 1),
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Unsure);
                }
                let mut i = self.ws(i + 1);
                if self.b.get(i) == Some(&b']') {
                    return Ok(i + 1);
                }
                loop {
                    // every element is read; the first scalar among them goes to `slot`
                    i = self.scalar(i, depth + 1, slot)?;
                    i = match self.next_or_close(i, b']')? {
                        Ok(next) => next,
                        Err(past) => return Ok(past),
                    };
                }
            }
            Some(b't') => {
                let i = self.literal(i, b"true")?;
                self.put(slot, Value::Bool(true));
                Ok(i)
            }
            Some(b'f') => {
                let i = self.literal(i, b"false")?;
                self.put(slot, Value::Bool(false));
                Ok(i)
            }
            Some(b'n') => self.literal(i, b"null"),
            _ => Err(Unsure),
        }
    }

    /// `IgnoredAny`: checks the value's syntax and builds nothing.
    fn skip(&mut self, i: usize, depth: u32) -> Fast<usize> {
        match self.b.get(i) {
            Some(b'"') => self.string(i + 1).map(|(end, _)| end + 1),
            Some(b'{') => self.skip_object(i + 1, depth + 1),
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Unsure);
                }
                let mut i = self.ws(i + 1);
                if self.b.get(i) == Some(&b']') {
                    return Ok(i + 1);
                }
                loop {
                    i = self.skip(i, depth + 1)?;
                    i = match self.next_or_close(i, b']')? {
                        Ok(next) => next,
                        Err(past) => return Ok(past),
                    };
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number_end(i).map(|(end, _)| end),
            Some(b't') => self.literal(i, b"true"),
            Some(b'f') => self.literal(i, b"false"),
            Some(b'n') => self.literal(i, b"null"),
            _ => Err(Unsure),
        }
    }

    /// The members of an object nobody wants, from just past `{`.
    fn skip_object(&mut self, i: usize, depth: u32) -> Fast<usize> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        let mut i = self.ws(i);
        if self.b.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        loop {
            if self.b.get(i) != Some(&b'"') {
                return Err(Unsure);
            }
            let (end, _) = self.string(i + 1)?;
            i = self.colon(end + 1)?;
            i = self.skip(i, depth)?;
            i = match self.next_or_close(i, b'}')? {
                Ok(next) => next,
                Err(past) => return Ok(past),
            };
        }
    }

    #[inline(always)]
    fn literal(&self, i: usize, word: &[u8]) -> Fast<usize> {
        if self.b.get(i..).is_some_and(|r| r.starts_with(word)) {
            Ok(i + word.len())
        } else {
            Err(Unsure)
        }
    }

    /// The string whose contents start at `i` (just past its opening quote): the position of
    /// its closing quote, and whether it has escapes.
    #[inline(always)]
    fn string(&self, i: usize) -> Fast<(usize, bool)> {
        if !self.plain {
            return self.escaped_string(i);
        }
        // No escapes or control bytes on the line: the next quote ends the string. Most keys
        // and values end within 32 bytes; past that, `memchr`'s wide compares pay for its call.
        if let Some(c) = self.b.get(i..).and_then(<[u8]>::first_chunk::<32>) {
            for (k, w) in c.chunks_exact(8).enumerate() {
                let m = bytes_equal(u64::from_le_bytes(w.try_into().unwrap_or_default()), b'"');
                if m != 0 {
                    return Ok((i + 8 * k + (m.trailing_zeros() / 8) as usize, false));
                }
            }
            let rest = self.b.get(i + 32..).unwrap_or_default();
            return memchr::memchr(b'"', rest)
                .map(|k| (i + 32 + k, false))
                .ok_or(Unsure);
        }
        let rest = self.b.get(i..).unwrap_or_default();
        memchr::memchr(b'"', rest)
            .map(|k| (i + k, false))
            .ok_or(Unsure)
    }

    /// [`string`](Self::string) on a line that has escapes or control bytes: escapes are
    /// checked as serde_json checks them; a `\u` escape of a UTF-16 surrogate (which
    /// serde_json accepts or not depending on what follows and where) is left to serde_json,
    /// as is a raw control character (always an error).
    fn escaped_string(&self, mut i: usize) -> Fast<(usize, bool)> {
        let mut escaped = false;
        loop {
            while let Some(chunk) = self.b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
                let stops = string_stops(u64::from_le_bytes(*chunk));
                if stops != 0 {
                    i += (stops.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match self.b.get(i) {
                None => return Err(Unsure),
                Some(b'"') => return Ok((i, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    match self.b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let n = self.b.get(i + 2..).and_then(hex4).ok_or(Unsure)?;
                            if (0xD800..=0xDFFF).contains(&n) {
                                return Err(Unsure);
                            }
                            i += 6;
                        }
                        _ => return Err(Unsure),
                    }
                }
                Some(&c) if c < 0x20 => return Err(Unsure),
                Some(_) => i += 1,
            }
        }
    }

    /// Appends the string `line[start..end]`, checked by [`string`](Self::string), unescaped.
    fn unescape_into(&self, start: usize, end: usize, out: &mut String) -> Fast<()> {
        let mut rest = self.line.get(start..end).ok_or(Unsure)?;
        while let Some(at) = memchr::memchr(b'\\', rest.as_bytes()) {
            out.push_str(&rest[..at]);
            let after = &rest.as_bytes()[at + 1..];
            let (c, used) = match after.first() {
                Some(b'"') => ('"', 1),
                Some(b'\\') => ('\\', 1),
                Some(b'/') => ('/', 1),
                Some(b'b') => ('\u{8}', 1),
                Some(b'f') => ('\u{c}', 1),
                Some(b'n') => ('\n', 1),
                Some(b'r') => ('\r', 1),
                Some(b't') => ('\t', 1),
                Some(b'u') => {
                    let n = after.get(1..).and_then(hex4).ok_or(Unsure)?;
                    (char::from_u32(n).ok_or(Unsure)?, 5)
                }
                _ => return Err(Unsure),
            };
            out.push(c);
            rest = rest.get(at + 1 + used..).ok_or(Unsure)?;
        }
        out.push_str(rest);
        Ok(())
    }

    /// The end of the number at `i`, and whether it is a plain integer of at most 18 digits
    /// (no fraction, no exponent). The grammar is JSON's, which serde_json follows: no
    /// leading zeros, a digit after `-`, `.` and the exponent mark.
    #[inline(always)]
    fn number_end(&self, start: usize) -> Fast<(usize, bool)> {
        let digits = |mut i: usize| {
            while let Some(b'0'..=b'9') = self.b.get(i) {
                i += 1;
            }
            i
        };
        let mut i = start + usize::from(self.b.get(start) == Some(&b'-'));
        let int_start = i;
        match self.b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => return Err(Unsure),
        }
        let mut plain = i - int_start <= 18;
        if let Some(b'0'..=b'9') = self.b.get(i) {
            return Err(Unsure); // a leading zero
        }
        if self.b.get(i) == Some(&b'.') {
            let after = digits(i + 1);
            if after == i + 1 {
                return Err(Unsure);
            }
            i = after;
            plain = false;
        }
        if let Some(b'e' | b'E') = self.b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = self.b.get(i) {
                i += 1;
            }
            let after = digits(i);
            if after == i {
                return Err(Unsure);
            }
            i = after;
            plain = false;
        }
        Ok((i, plain))
    }

    /// The number at `i` for `slot`, as serde_json reads it for `deserialize_any`: `u64` when
    /// not negative, `i64` when negative, `f64` with a fraction, an exponent or beyond 64 bits
    /// (and for `-0`).
    fn number(&mut self, start: usize, slot: Option<usize>) -> Fast<usize> {
        let (end, plain) = self.number_end(start)?;
        let s = &self.b[start..end];
        if plain {
            // At most 18 digits: no overflow, and serde_json's value is plainly this one.
            if self.wants(slot) {
                let (neg, digits) = match s.split_first() {
                    Some((b'-', d)) => (true, d),
                    _ => (false, s),
                };
                let n = digits
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                let v = match (neg, n) {
                    (false, n) => Value::U64(n),
                    (true, 0) => Value::F64(-0.0),
                    (true, n) => Value::I64(-(n as i64)),
                };
                self.put(slot, v);
            }
            return Ok(end);
        }
        // Fractions, exponents and long integers go through serde_json's own number parser,
        // which also says when one is out of range (an error, even for a value not kept).
        let text = self.line.get(start..end).ok_or(Unsure)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let v = ScalarSeed.deserialize(&mut de).map_err(|_| Unsure)?;
        de.end().map_err(|_| Unsure)?;
        let v = match v {
            Some(Scalar::U64(v)) => Value::U64(v),
            Some(Scalar::I64(v)) => Value::I64(v),
            Some(Scalar::F64(v)) => Value::F64(v),
            _ => return Err(Unsure),
        };
        self.put(slot, v);
        Ok(end)
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
            let Some(child) = self.node.find_str(&key.0) else {
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

    /// The fast walker's values as the serde walker's scalars.
    fn fast(p: &Projection, line: &str) -> Option<Vec<Option<Scalar<'static>>>> {
        let mut out = vec![Value::Absent; p.slots()];
        let mut text = String::new();
        p.project_fast(line, &mut out, &mut text).ok()?;
        Some(
            out.into_iter()
                .map(|v| v.scalar(line, &text).map(owned))
                .collect(),
        )
    }

    fn owned(s: Scalar<'_>) -> Scalar<'static> {
        match s {
            Scalar::Str(c) => Scalar::Str(Cow::Owned(c.into_owned())),
            Scalar::I64(v) => Scalar::I64(v),
            Scalar::U64(v) => Scalar::U64(v),
            Scalar::F64(v) => Scalar::F64(v),
            Scalar::Bool(v) => Scalar::Bool(v),
        }
    }

    /// Equal values, floats bit for bit (`-0.0` is not `0.0` here).
    fn same(a: &[Option<Scalar<'_>>], b: &[Option<Scalar<'_>>]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Some(Scalar::F64(x)), Some(Scalar::F64(y))) => x.to_bits() == y.to_bits(),
                _ => x == y,
            })
    }

    /// The fast walker answers only when serde_json accepts the line, and then with its values;
    /// `project` always agrees with `extract`.
    fn agree(p: &Projection, line: &str) -> Result<bool, String> {
        let mut want = Vec::new();
        let serde = p.extract(line, &mut want).map(|()| want.clone());
        let fast = fast(p, line);
        match (&serde, &fast) {
            (Ok(w), Some(f)) if !same(w, f) => {
                return Err(format!("{line:?}: serde {w:?}, fast {f:?}"));
            }
            (Err(e), Some(f)) => return Err(format!("{line:?}: serde error {e}, fast {f:?}")),
            _ => {}
        }
        let mut out = vec![Value::Absent; p.slots()];
        let mut text = String::new();
        match (p.project(line, &mut out, &mut text), &serde) {
            (Ok(()), Ok(w)) => {
                let got: Vec<_> = out.iter().map(|v| v.scalar(line, &text)).collect();
                if !same(w, &got) {
                    return Err(format!("{line:?}: project {got:?}, serde {w:?}"));
                }
            }
            (Err(a), Err(b)) if a.to_string() == b.to_string() => {}
            (a, b) => return Err(format!("{line:?}: project {a:?}, serde {b:?}")),
        }
        Ok(fast.is_some())
    }

    fn paths() -> Projection {
        Projection::new(&["a", "a.b", "b.c", "b.c.d", "b.d", "k", "", "x.y.z"]).0
    }

    #[test]
    fn fast_walker_agrees_on_edge_cases() {
        let p = paths();
        let lines = [
            r#"{}"#,
            r#" { } "#,
            "\t{\"a\":1}\r\n",
            r#"{"a":"x","a":"y"}"#,
            r#"{"a":null,"a":"y"}"#,
            r#"{"a":[],"a":"y"}"#,
            r#"{"a":[null,{"q":1},[["deep"]],"z"]}"#,
            r#"{"a":{"b":"nested","c":[1]},"b":{"c":{"d":true},"d":false}}"#,
            r#"{"b":{"c":"flat"},"b":{"c":{"d":1}}}"#,
            r#"{"a":"\"q\" \\ \/ \b\f\n\r\t \u00e9 \u20AC"}"#,
            r#"{"a\u0062":"escaped key","k":"\ud83d\ude00"}"#,
            r#"{"k":"\ud800"}"#,
            r#"{"x":"\ud800"}"#,
            r#"{"k":"\udc00x"}"#,
            r#"{"x":{"y":"\udc00"}}"#,
            r#"{"a":["ok","\udfff"]}"#,
            r#"{"q":"\udc00"}"#,
            r#"{"k":"\x"}"#,
            "{\"k\":\"ctl\u{1}\"}",
            r#"{"k":"é ü \u00a0"}"#,
            r#"{"a":0,"k":-0,"b":{"d":-12},"x":{"y":{"z":1.5}}}"#,
            r#"{"a":123456789012345678,"k":1234567890123456789}"#,
            r#"{"a":18446744073709551615,"k":18446744073709551616}"#,
            r#"{"a":-9223372036854775808,"k":-9223372036854775809}"#,
            r#"{"a":1e5,"k":1E+400,"x":1e400,"b":{"d":[1e400]}}"#,
            r#"{"a":0.1e-400,"k":2.5E-3,"q":-1.0e+2}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1.5.2}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul,"k":1}"#,
            r#"{"a":truex}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "k":2}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":1}}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"{"a":"unterminated"#,
            r#"{"a":"x"#,
            r#"{"":"empty key"}"#,
            r#"[1,2]"#,
            r#""str""#,
            r#"{'a':1}"#,
            r#"{"a":{"b":[1,2,{"c":[]}]}}"#,
            r#"{"x":{"y":"not an object"}}"#,
            r#"{"q":{"w":{"e":[{"r":"\u0041"}]}},"k":"after"}"#,
        ];
        for line in lines {
            agree(&p, line).unwrap();
        }
        let deep = format!("{{\"q\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        agree(&p, &deep).unwrap();
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        agree(&p, &deep).unwrap();
        let deep = format!("{{\"k\":{}1{}}}", "{\"k\":".repeat(100), "}".repeat(100));
        agree(&p, &deep).unwrap();
    }

    #[test]
    fn digit_strings_read_as_the_float_parser_reads_them() {
        for s in [
            "0",
            "7",
            "00012",
            "203",
            "999999999999999",
            "123456789012345",
        ] {
            assert_eq!(digits_f64(s), Some(s.parse::<f64>().unwrap()), "{s}");
        }
        for s in [
            "",
            " 1",
            "1 ",
            "+1",
            "-1",
            "1.5",
            "1e3",
            "1234567890123456",
            "١",
        ] {
            assert_eq!(digits_f64(s), None, "{s}");
        }
    }

    #[test]
    fn key_lookup_is_exact_at_every_length() {
        let keys: Vec<String> = (0..=40)
            .map(|n| (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect())
            .collect();
        let (p, _) = Projection::new(&keys[1..]);
        let root = &p.root;
        // as the walker sees keys: inside a line, followed by more bytes
        let look = |k: &[u8]| {
            let mut line = b"{\"".to_vec();
            line.extend_from_slice(k);
            line.extend_from_slice(b"\":1,\"zzzzzzzzzzzz\":2}");
            let (start, end) = (2, 2 + k.len());
            let found = root.find(&line[start..end], &words(&line, start, end));
            assert_eq!(
                found.map(|c| c.key.as_bytes()),
                root.find_str(std::str::from_utf8(k).unwrap())
                    .map(|c| c.key.as_bytes())
            );
            found.map(|c| c.key.to_string())
        };
        for k in &keys[1..] {
            assert_eq!(look(k.as_bytes()).as_deref(), Some(k.as_str()));
            for at in 0..k.len() {
                let mut m = k.clone().into_bytes();
                m[at] = b'Z';
                assert_eq!(look(&m), None, "{k} with byte {at} changed");
            }
        }
        assert_eq!(look(b""), None);
        assert_eq!(look(b"a\x00"), None);
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        fn string() -> impl Strategy<Value = String> {
            let part = prop_oneof![
                4 => "[a-zA-Z0-9 _.:/-]{0,12}",
                1 => Just("\\\"".to_string()),
                1 => Just("\\\\".to_string()),
                1 => Just("\\n".to_string()),
                1 => Just("\\/".to_string()),
                1 => Just("\\u00e9".to_string()),
                1 => Just("\\uD83D\\uDE00".to_string()),
                1 => Just("\\ud800".to_string()),
                1 => Just("\\uDC01".to_string()),
                1 => Just("\\x".to_string()),
                1 => Just("\\u12".to_string()),
                1 => Just("\u{1}".to_string()),
                1 => Just("é€😀\u{a0}".to_string()),
                1 => Just("-".to_string()),
            ];
            prop::collection::vec(part, 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
        }

        fn number() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| format!("{n:?}")),
                (0u32..1000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
                "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
                "[-+.eE0-9]{1,6}",
            ]
        }

        fn ws() -> impl Strategy<Value = &'static str> {
            prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\n\t\r ")]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                8 => prop::sample::select(vec!["a", "b", "c", "d", "k", "x", "y", "z", "", "q"])
                    .prop_map(|k| format!("\"{k}\"")),
                1 => Just("\"\\u0061\"".to_string()),
                1 => string(),
            ]
        }

        /// Mostly nothing; sometimes a trailing comma, which JSON does not allow.
        fn stray_comma() -> impl Strategy<Value = &'static str> {
            prop_oneof![12 => Just(""), 1 => Just(","), 1 => Just(" , ")]
        }

        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                3 => string(),
                3 => number(),
                1 => prop::sample::select(vec!["true", "false", "null", "nul", "tru", "nullx"])
                    .prop_map(str::to_string),
            ];
            leaf.prop_recursive(5, 48, 6, |inner| {
                prop_oneof![
                    (
                        prop::collection::vec((ws(), key(), ws(), inner.clone(), ws()), 0..6),
                        stray_comma(),
                    )
                        .prop_map(|(members, comma)| {
                            let m: Vec<String> = members
                                .into_iter()
                                .map(|(a, k, b, v, c)| format!("{a}{k}{b}:{v}{c}"))
                                .collect();
                            format!("{{{}{comma}}}", m.join(","))
                        }),
                    (
                        prop::collection::vec((ws(), inner, ws()), 0..5),
                        stray_comma()
                    )
                        .prop_map(|(items, comma)| {
                            let i: Vec<String> = items
                                .into_iter()
                                .map(|(a, v, b)| format!("{a}{v}{b}"))
                                .collect();
                            format!("[{}{comma}]", i.join(","))
                        }),
                ]
            })
        }

        /// A document, then maybe a few bytes' damage (inserted structure, deleted bytes).
        fn line() -> impl Strategy<Value = String> {
            let edit = prop_oneof![
                6 => Just(None),
                1 => (any::<prop::sample::Index>(), prop::sample::select(vec![
                    ",", "}", "]", "{", "[", "\"", "\\", ":", " ", "1", "e", "-", "\u{0}",
                ]))
                .prop_map(|(i, s)| Some((i, s, 0))),
                1 => (any::<prop::sample::Index>(), 1usize..4).prop_map(|(i, n)| Some((i, "", n))),
            ];
            (
                prop::collection::vec((ws(), key(), ws(), value(), ws()), 0..8),
                stray_comma(),
                edit,
                prop_oneof![8 => Just(""), 1 => Just(" x"), 1 => Just("}")],
            )
                .prop_map(|(members, comma, edit, tail)| {
                    let m: Vec<String> = members
                        .into_iter()
                        .map(|(a, k, b, v, c)| format!("{a}{k}{b}:{v}{c}"))
                        .collect();
                    let mut line = format!("{{{}{comma}}}{tail}", m.join(","));
                    if let Some((i, ins, del)) = edit {
                        let mut at = i.index(line.len() + 1);
                        while !line.is_char_boundary(at) {
                            at -= 1;
                        }
                        let mut end = (at + del).min(line.len());
                        while !line.is_char_boundary(end) {
                            end += 1;
                        }
                        line.replace_range(at..end, ins);
                    }
                    line
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]
            #[test]
            fn fast_walker_agrees_with_serde_json(line in line()) {
                let p = paths();
                if let Err(e) = agree(&p, &line) {
                    prop_assert!(false, "{}", e);
                }
            }
        }

        #[test]
        fn most_generated_lines_take_the_fast_path() {
            use proptest::strategy::ValueTree;
            use proptest::test_runner::TestRunner;
            let p = paths();
            let mut runner = TestRunner::deterministic();
            let (mut fast, mut ok) = (0, 0);
            for _ in 0..2000 {
                let line = line().new_tree(&mut runner).unwrap().current();
                let mut out = Vec::new();
                if p.extract(&line, &mut out).is_ok() {
                    ok += 1;
                    fast += usize::from(agree(&p, &line).unwrap());
                }
            }
            // The generator aims at the walker's corners, so many valid lines are left to
            // serde_json; the point is that the fast walker is exercised on valid input too.
            assert!(ok > 200 && fast * 2 > ok, "{fast} fast of {ok} valid");
        }
    }
}
