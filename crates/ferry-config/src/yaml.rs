//! A YAML tree that keeps every position and every key, built from saphyr's event parser.
//!
//! saphyr's own loader stops at the first duplicate key and folds mappings into a hash map,
//! so the validator could neither report all duplicates nor point at the second one. This
//! tree keeps mappings as ordered `(key, value)` pairs, duplicates included; scalars keep
//! their source text next to the YAML 1.2 core-schema value saphyr resolves them to.

use std::borrow::Cow;
use std::collections::BTreeMap;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver, Tag};

/// Nesting deeper than this is refused: no real pipeline file comes close, and it keeps
/// recursive clones and drops of hostile input shallow.
const MAX_DEPTH: usize = 128;
/// Nodes that aliases may produce in total (the "billion laughs" defence).
const ALIAS_BUDGET: usize = 10_000;

/// A 1-based position in the source, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_span(span: Span) -> Pos {
        Pos {
            line: span.start.line().max(1),
            column: span.start.col() + 1,
        }
    }
}

/// A scalar resolved with the YAML 1.2 core schema (`no` and `on` stay strings).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar {
        /// The text as written (unquoted, unescaped).
        text: String,
        value: Value,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

impl Node {
    /// How the node is named in "found …" parts of messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
            Kind::Scalar { text, value } => match value {
                Value::Null => "nothing".to_string(),
                Value::Bool(_) => format!("`{text}`"),
                Value::Float(f) if !f.is_finite() => format!("`{text}`"),
                Value::Int(_) | Value::Float(_) => format!("the number `{text}`"),
                Value::Str => format!("the text `{}`", ellipsize(text)),
            },
        }
    }

    /// The text of a non-null scalar, numbers and booleans as written.
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar {
                value: Value::Null, ..
            } => None,
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(
            self.kind,
            Kind::Scalar {
                value: Value::Null,
                ..
            }
        )
    }
}

/// Shortens long values quoted back in messages.
pub(crate) fn ellipsize(s: &str) -> String {
    const MAX: usize = 40;
    let one_line = s.lines().next().unwrap_or("");
    if one_line.chars().count() > MAX || one_line.len() != s.len() {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

/// What loading a source text gave.
pub(crate) enum Loaded {
    /// The first document (the one ferry reads); `extra` is where a second one starts.
    Doc { root: Node, extra: Option<Pos> },
    /// No document at all: an empty file or only comments.
    Empty,
    /// Not valid YAML, or refused (too deep, too many alias nodes).
    Error { pos: Pos, message: String },
}

pub(crate) fn load(source: &str) -> Loaded {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        return Loaded::Error {
            pos: Pos {
                line: m.line().max(1),
                column: m.col() + 1,
            },
            message: e.info().to_string(),
        };
    }
    if let Some((pos, message)) = builder.error {
        return Loaded::Error { pos, message };
    }
    let mut docs = builder.docs.into_iter();
    match docs.next() {
        None => Loaded::Empty,
        Some(root) => Loaded::Doc {
            root,
            extra: builder.doc_starts.get(1).copied(),
        },
    }
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    doc_starts: Vec<Pos>,
    anchors: BTreeMap<usize, Node>,
    alias_nodes: usize,
    error: Option<(Pos, String)>,
}

impl Builder {
    fn on_event_impl(&mut self, ev: Event<'_>, span: Span) -> Result<(), String> {
        let pos = Pos::from_span(span);
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => self.doc_starts.push(pos),
            Event::SequenceStart(anchor, _) => {
                self.push_frame(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                })?;
            }
            Event::MappingStart(anchor, _) => {
                self.push_frame(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                })?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => (
                        Node {
                            pos,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            pos,
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    ),
                    None => return Err("unbalanced collection end".to_string()),
                };
                self.insert(node, anchor);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    pos,
                    kind: Kind::Scalar {
                        value: resolve(&text, style, tag.as_ref()),
                        text: text.into_owned(),
                    },
                };
                self.insert(node, anchor);
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(n) => {
                        self.alias_nodes += count_nodes(n);
                        if self.alias_nodes > ALIAS_BUDGET {
                            return Err(format!(
                                "aliases expand to more than {ALIAS_BUDGET} nodes"
                            ));
                        }
                        n.clone()
                    }
                    None => return Err("alias to an unknown anchor".to_string()),
                };
                self.insert(node, 0);
            }
        }
        Ok(())
    }

    fn push_frame(&mut self, frame: Frame) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn insert(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        if self.error.is_some() {
            return;
        }
        if let Err(message) = self.on_event_impl(ev, span) {
            self.error = Some((Pos::from_span(span), message));
        }
    }
}

fn resolve(text: &str, style: ScalarStyle, tag: Option<&Cow<'_, Tag>>) -> Value {
    match Scalar::parse_from_cow_and_metadata(Cow::Borrowed(text), style, tag) {
        Some(Scalar::Null) => Value::Null,
        Some(Scalar::Boolean(b)) => Value::Bool(b),
        Some(Scalar::Integer(i)) => Value::Int(i),
        Some(Scalar::FloatingPoint(f)) => Value::Float(f.0),
        Some(Scalar::String(_)) | None => Value::Str,
    }
}

fn count_nodes(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Scalar { .. } => 0,
        Kind::Seq(items) => items.iter().map(count_nodes).sum(),
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| count_nodes(k) + count_nodes(v))
            .sum(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn root(src: &str) -> Node {
        match load(src) {
            Loaded::Doc { root, .. } => root,
            Loaded::Empty => panic!("empty"),
            Loaded::Error { message, .. } => panic!("{message}"),
        }
    }

    #[test]
    fn keeps_duplicate_keys_and_positions() {
        let n = root("a: 1\nb:\n  - x\na: no\n");
        let Kind::Map(entries) = &n.kind else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].0.pos, Pos { line: 4, column: 1 });
        assert_eq!(entries[2].1.pos, Pos { line: 4, column: 4 });
        let Kind::Scalar { value, .. } = &entries[2].1.kind else {
            panic!("not a scalar")
        };
        assert_eq!(*value, Value::Str, "`no` stays a string in YAML 1.2");
        let Kind::Seq(items) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
    }

    #[test]
    fn quoted_numbers_are_strings() {
        let n = root("a: '80'\nb: 80\nc: 8.5\nd:\n");
        let Kind::Map(e) = &n.kind else { panic!() };
        let values: Vec<_> = e
            .iter()
            .map(|(_, v)| match &v.kind {
                Kind::Scalar { value, .. } => value.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            values,
            vec![Value::Str, Value::Int(80), Value::Float(8.5), Value::Null]
        );
    }

    #[test]
    fn aliases_are_expanded_within_budget() {
        let n = root("a: &x [1, 2]\nb: *x\n");
        let Kind::Map(e) = &n.kind else { panic!() };
        assert!(matches!(&e[1].1.kind, Kind::Seq(items) if items.len() == 2));

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(matches!(load(&bomb), Loaded::Error { .. }));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(matches!(load(&deep), Loaded::Error { .. }));
    }
}
