//! A parser for ZConfig's file syntax (the `zeo.conf` format), schema-free: it
//! produces a tree of sections and `key value` lines that the typed model
//! (`model.rs`) then checks.
//!
//! It follows `ZConfig.cfgparser`: lines are stripped; blank lines and lines
//! starting with `#` are ignored (there are no end-of-line comments: a `#`
//! after a value is part of the value); `<type name>` opens a section and
//! `</type>` closes it, `<type name/>` is an empty section; section types,
//! section names and keys are case-insensitive and normalised to lowercase;
//! `%define NAME value`, `%import package` and `%include path` are directives;
//! values may use `$name`, `${name}` (defines), `$(NAME)` (environment) and `$$`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{ConfigError, Position};

/// How deep `%include` may nest (a guard against runaway includes).
const MAX_INCLUDE_DEPTH: usize = 16;

/// A section: `<type name>` … `</type>`. The top of the file is a section with an
/// empty type.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The section type, lowercased (`filestorage`).
    pub type_name: String,
    /// The section name, lowercased, if given (`<filestorage 1>` → `"1"`).
    pub name: Option<String>,
    /// Where the section starts.
    pub pos: Position,
    /// Keys and subsections in file order.
    pub entries: Vec<Entry>,
}

/// One item inside a section.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Key(KeyValue),
    Section(Section),
}

/// A `key value` line; the key is lowercased, the value substituted and trimmed.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub pos: Position,
}

/// An `%import package` directive.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub package: String,
    pub pos: Position,
}

/// A parsed file (with its includes expanded).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Section,
    pub imports: Vec<Import>,
}

impl Section {
    /// `<type name>` as written in a config file (lowercased), for messages.
    pub fn header(&self) -> String {
        match &self.name {
            Some(name) => format!("<{} {}>", self.type_name, name),
            None => format!("<{}>", self.type_name),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &KeyValue> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Key(kv) => Some(kv),
            Entry::Section(_) => None,
        })
    }

    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Section(s) => Some(s),
            Entry::Key(_) => None,
        })
    }
}

/// Read and parse a configuration file (and whatever it `%include`s).
pub fn parse_file(path: &Path) -> Result<Document, ConfigError> {
    let mut parser = Parser::default();
    let file = Arc::new(path.to_path_buf());
    let mut root = Section {
        type_name: String::new(),
        name: None,
        pos: Position::new(file, 0),
        entries: Vec::new(),
    };
    parser.parse_file(path, &mut root)?;
    Ok(Document {
        root,
        imports: parser.imports,
    })
}

/// Parse configuration text; `path` is used in messages and to resolve `%include`.
#[cfg(test)]
pub fn parse_str(text: &str, path: &Path) -> Result<Document, ConfigError> {
    let mut parser = Parser::default();
    let file = Arc::new(path.to_path_buf());
    let mut root = Section {
        type_name: String::new(),
        name: None,
        pos: Position::new(file.clone(), 0),
        entries: Vec::new(),
    };
    parser.parse_text(text, file, &mut root)?;
    Ok(Document {
        root,
        imports: parser.imports,
    })
}

#[derive(Default)]
struct Parser {
    defines: HashMap<String, String>,
    imports: Vec<Import>,
    /// Canonical paths of the files being parsed, outermost first.
    including: Vec<PathBuf>,
}

impl Parser {
    fn parse_file(&mut self, path: &Path, into: &mut Section) -> Result<(), ConfigError> {
        let read_error = |cause| ConfigError::Read {
            file: path.to_path_buf(),
            cause,
        };
        let canonical = path.canonicalize().map_err(read_error)?;
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        self.including.push(canonical);
        let result = self.parse_text(&text, Arc::new(path.to_path_buf()), into);
        self.including.pop();
        result
    }

    fn parse_text(
        &mut self,
        text: &str,
        file: Arc<PathBuf>,
        into: &mut Section,
    ) -> Result<(), ConfigError> {
        // Sections opened in this file and not closed yet; includes must be balanced.
        let mut open: Vec<Section> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let pos = Position::new(file.clone(), index + 1);
            let line = raw.trim();
            let current = match open.last_mut() {
                Some(section) => section,
                None => &mut *into,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            } else if let Some(rest) = line.strip_prefix("</") {
                let rest = rest
                    .strip_suffix('>')
                    .ok_or_else(|| pos.error("malformed section end (missing '>')"))?;
                let type_name = rest.trim().to_lowercase();
                let Some(section) = open.pop() else {
                    return Err(pos.error(format!(
                        "unexpected </{type_name}>, no section is open{}",
                        if into.type_name.is_empty() {
                            String::new()
                        } else {
                            format!(" in this file (inside {})", into.header())
                        }
                    )));
                };
                if section.type_name != type_name {
                    return Err(pos.error(format!(
                        "unexpected </{type_name}>, expected </{}> (opened at line {})",
                        section.type_name, section.pos.line
                    )));
                }
                match open.last_mut() {
                    Some(parent) => parent.entries.push(Entry::Section(section)),
                    None => into.entries.push(Entry::Section(section)),
                }
            } else if let Some(rest) = line.strip_prefix('<') {
                let rest = rest
                    .strip_suffix('>')
                    .ok_or_else(|| pos.error("malformed section start (missing '>')"))?;
                let (rest, empty) = match rest.strip_suffix('/') {
                    Some(r) => (r, true),
                    None => (rest, false),
                };
                let section = section_header(rest, &pos)?;
                if empty {
                    current.entries.push(Entry::Section(section));
                } else {
                    open.push(section);
                }
            } else if let Some(rest) = line.strip_prefix('%') {
                self.directive(rest, &pos, current)?;
            } else {
                let (key, value) = split_key_value(line);
                let key = basic_key(key).ok_or_else(|| {
                    pos.error(format!(
                        "malformed line: '{key}' is not a valid key name \
                         (keys are letters, digits, '-', '.', '_', then a blank and the value)"
                    ))
                })?;
                let value = self.substitute(value, &pos)?;
                current
                    .entries
                    .push(Entry::Key(KeyValue { key, value, pos }));
            }
        }
        if let Some(section) = open.pop() {
            return Err(section.pos.error(format!(
                "section {} is never closed (expected </{}> before the end of {})",
                section.header(),
                section.type_name,
                file.display()
            )));
        }
        Ok(())
    }

    fn directive(
        &mut self,
        rest: &str,
        pos: &Position,
        current: &mut Section,
    ) -> Result<(), ConfigError> {
        let (name, arg) = split_key_value(rest);
        if !matches!(name, "define" | "import" | "include") {
            return Err(pos.error(format!(
                "unknown directive '%{name}' (expected %define, %import or %include)"
            )));
        }
        if arg.is_empty() {
            return Err(pos.error(format!("missing argument to %{name}")));
        }
        match name {
            "define" => {
                let (def, value) = split_key_value(arg);
                let def = def.to_lowercase();
                if !is_name(&def) {
                    return Err(pos.error(format!("not a valid name for %define: '{def}'")));
                }
                let value = self.substitute(value, pos)?;
                if let Some(old) = self.defines.get(&def) {
                    if *old != value {
                        return Err(pos.error(format!("cannot redefine '{def}' (already '{old}')")));
                    }
                }
                self.defines.insert(def, value);
            }
            "import" => {
                let package = self.substitute(arg, pos)?;
                self.imports.push(Import {
                    package,
                    pos: pos.clone(),
                });
            }
            _ => {
                let target = self.substitute(arg, pos)?;
                self.include(&target, pos, current)?;
            }
        }
        Ok(())
    }

    /// `%include path`: a local file, relative to the including file's directory.
    fn include(
        &mut self,
        target: &str,
        pos: &Position,
        current: &mut Section,
    ) -> Result<(), ConfigError> {
        if target.contains("://") {
            return Err(pos.error(format!(
                "%include of a URL is not supported, only local files: '{target}'"
            )));
        }
        if self.including.len() >= MAX_INCLUDE_DEPTH {
            return Err(pos.error(format!(
                "%include nested more than {MAX_INCLUDE_DEPTH} deep"
            )));
        }
        let base = pos.file.parent().unwrap_or(Path::new(""));
        let path = base.join(target);
        if let Ok(canonical) = path.canonicalize() {
            if self.including.contains(&canonical) {
                return Err(pos.error(format!(
                    "%include {target}: {} includes itself",
                    path.display()
                )));
            }
        }
        self.parse_file(&path, current).map_err(|err| match err {
            ConfigError::Read { file, cause } => pos.error(format!(
                "%include {target}: cannot read {}: {cause}",
                file.display()
            )),
            other => other,
        })
    }

    /// ZConfig's `substitute`: `$$`, `$name`, `${name}`, `$(ENVVAR)`.
    fn substitute(&self, text: &str, pos: &Position) -> Result<String, ConfigError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, env, tail) = if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            } else if let Some(inner) = after.strip_prefix('{') {
                let (name, tail) = leading_name(inner);
                let tail = tail
                    .strip_prefix('}')
                    .filter(|_| !name.is_empty())
                    .ok_or_else(|| {
                        pos.error(format!("'${{' not followed by a name and '}}' in '{text}'"))
                    })?;
                (name, false, tail)
            } else if let Some(inner) = after.strip_prefix('(') {
                let (name, tail) = leading_name(inner);
                let tail = tail
                    .strip_prefix(')')
                    .filter(|_| !name.is_empty())
                    .ok_or_else(|| {
                        pos.error(format!("'$(' not followed by a name and ')' in '{text}'"))
                    })?;
                (name, true, tail)
            } else {
                let (name, tail) = leading_name(after);
                if name.is_empty() {
                    return Err(pos.error(format!(
                        "'$' not followed by '$' or a name in '{text}' (write $$ for a literal $)"
                    )));
                }
                (name, false, tail)
            };
            let value = if env {
                std::env::var(name).ok()
            } else {
                self.defines.get(&name.to_lowercase()).cloned()
            };
            let value = value.ok_or_else(|| {
                pos.error(if env {
                    format!("environment variable '{name}' is not set")
                } else {
                    format!("'{name}' is not defined (use %define {name} VALUE first)")
                })
            })?;
            out.push_str(&value);
            rest = tail;
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Split `key rest-of-line` at the first blank (the rest trimmed, maybe empty).
/// ZConfig's key pattern is `[^\s()]+`; parentheses end up in an invalid key.
fn split_key_value(line: &str) -> (&str, &str) {
    match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    }
}

/// A section header's inside: `type` or `type name`.
fn section_header(text: &str, pos: &Position) -> Result<Section, ConfigError> {
    let mut words = text.split_whitespace();
    let type_name = words.next();
    let name = words.next();
    let valid = |w: &str| !w.contains(['(', ')', '<', '>']);
    match (type_name, name, words.next()) {
        (Some(t), name, None) if valid(t) && name.into_iter().all(valid) => Ok(Section {
            type_name: t.to_lowercase(),
            name: name.map(str::to_lowercase),
            pos: pos.clone(),
            entries: Vec::new(),
        }),
        _ => Err(pos.error(format!(
            "malformed section header '<{text}>' (expected <type> or <type name>)"
        ))),
    }
}

/// ZConfig's `basic-key`: `[a-zA-Z][-._a-zA-Z0-9]*`, lowercased.
fn basic_key(key: &str) -> Option<String> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    (first_ok && rest_ok).then(|| key.to_ascii_lowercase())
}

/// A substitution name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_name(s: &str) -> bool {
    let (name, rest) = leading_name(s);
    !name.is_empty() && rest.is_empty()
}

/// The longest substitution name at the start of `s`, and what follows it.
fn leading_name(s: &str) -> (&str, &str) {
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        end = i + c.len_utf8();
    }
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<Document, ConfigError> {
        parse_str(text, Path::new("zeoraid.conf"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn sections_keys_comments_and_case() {
        let doc = parse(
            "# a comment\n\n<ZEO>\n  Address   127.0.0.1:8100  \n</zeo>\n\
             <FileStorage Main>\n  path var/Data.fs # not a comment\n</FILESTORAGE>\n<zeo/>\n",
        )
        .unwrap();
        let sections: Vec<_> = doc.root.sections().collect();
        assert_eq!(sections.len(), 3);
        assert_eq!(sections[0].header(), "<zeo>");
        assert_eq!(sections[0].pos.line, 3);
        let kv = sections[0].keys().next().unwrap();
        assert_eq!(
            (kv.key.as_str(), kv.value.as_str(), kv.pos.line),
            ("address", "127.0.0.1:8100", 4)
        );
        assert_eq!(sections[1].header(), "<filestorage main>");
        let kv = sections[1].keys().next().unwrap();
        assert_eq!(kv.value, "var/Data.fs # not a comment");
        assert!(sections[2].entries.is_empty());
    }

    #[test]
    fn nested_sections_and_repeated_keys() {
        let doc = parse(
            "<raidstorage 1>\n <zeoclient a>\n  server a:1\n  server b:2\n </zeoclient>\n</raidstorage>\n",
        )
        .unwrap();
        let raid = doc.root.sections().next().unwrap();
        let client = raid.sections().next().unwrap();
        let servers: Vec<_> = client.keys().map(|k| k.value.as_str()).collect();
        assert_eq!(servers, ["a:1", "b:2"]);
        assert_eq!(client.pos.line, 2);
    }

    #[test]
    fn key_without_value_is_empty() {
        let doc = parse("<x>\nblob-dir\n</x>\n").unwrap();
        let kv = doc.root.sections().next().unwrap().keys().next().unwrap();
        assert_eq!(kv.value, "");
    }

    #[test]
    fn defines_and_substitution() {
        let doc = parse(
            "%define DIR /srv/zeo\n%define fs ${dir}/Data.fs\n<x>\n a $DIR/blobs\n b $fs\n c 100$$\n d ${Dir}x\n</x>\n",
        )
        .unwrap();
        let values: Vec<_> = doc
            .root
            .sections()
            .next()
            .unwrap()
            .keys()
            .map(|k| k.value.clone())
            .collect();
        assert_eq!(
            values,
            ["/srv/zeo/blobs", "/srv/zeo/Data.fs", "100$", "/srv/zeox"]
        );
    }

    #[test]
    fn environment_substitution() {
        std::env::set_var("ZEORAID_TEST_CONFIG_VAR", "from-env");
        let doc = parse("<x>\n a $(ZEORAID_TEST_CONFIG_VAR)\n</x>\n").unwrap();
        assert_eq!(
            doc.root
                .sections()
                .next()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .value,
            "from-env"
        );
        assert_eq!(
            err("<x>\n a $(ZEORAID_TEST_CONFIG_UNSET_VAR)\n</x>\n"),
            "zeoraid.conf:2: environment variable 'ZEORAID_TEST_CONFIG_UNSET_VAR' is not set"
        );
    }

    #[test]
    fn define_errors() {
        assert!(err("<x>\n a $nope\n</x>\n").starts_with("zeoraid.conf:2: 'nope' is not defined"));
        assert!(
            err("%define a 1\n%define A 2\n").starts_with("zeoraid.conf:2: cannot redefine 'a'")
        );
        assert!(parse("%define a 1\n%define a 1\n").is_ok());
        assert!(err("%define 9x 1\n").starts_with("zeoraid.conf:1: not a valid name"));
        assert!(err("<x>\n a cost $\n</x>\n").starts_with("zeoraid.conf:2: '$' not followed"));
        assert!(err("<x>\n a ${x\n</x>\n").starts_with("zeoraid.conf:2: '${' not followed"));
        assert!(err("%define\n").starts_with("zeoraid.conf:1: missing argument to %define"));
        assert!(
            err("%frobnicate x\n").starts_with("zeoraid.conf:1: unknown directive '%frobnicate'")
        );
    }

    #[test]
    fn imports_are_recorded() {
        let doc = parse("%import gocept.zeoraid\n\n%import other.pkg\n").unwrap();
        let imports: Vec<_> = doc
            .imports
            .iter()
            .map(|i| (i.package.as_str(), i.pos.line))
            .collect();
        assert_eq!(imports, [("gocept.zeoraid", 1), ("other.pkg", 3)]);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        assert_eq!(
            err("<raidstorage 1>\n <zeoclient a>\n  server x:1\n</raidstorage>\n"),
            "zeoraid.conf:4: unexpected </raidstorage>, expected </zeoclient> (opened at line 2)"
        );
        assert_eq!(
            err("<zeo>\n address 1\n</zeo>\n</zeo>\n"),
            "zeoraid.conf:4: unexpected </zeo>, no section is open"
        );
        assert_eq!(
            err("\n<filestorage 1>\n path x\n"),
            "zeoraid.conf:2: section <filestorage 1> is never closed \
             (expected </filestorage> before the end of zeoraid.conf)"
        );
        assert!(err("<zeo\n").starts_with("zeoraid.conf:1: malformed section start"));
        assert!(err("<zeo>\n</zeo\n").starts_with("zeoraid.conf:2: malformed section end"));
        assert!(err("<a b c>\n").starts_with("zeoraid.conf:1: malformed section header '<a b c>'"));
        assert!(err("<>\n").starts_with("zeoraid.conf:1: malformed section header"));
        assert!(err("<x>\npath=x\n</x>\n").starts_with("zeoraid.conf:2: malformed line: 'path=x'"));
        assert!(err("<x>\n-path x\n</x>\n").starts_with("zeoraid.conf:2: malformed line"));
    }

    #[test]
    fn include_relative_to_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("conf.d/storage.conf"),
            "<filestorage 1>\n path $base/Data.fs\n</filestorage>\n",
        )
        .unwrap();
        let main = dir.path().join("zeoraid.conf");
        std::fs::write(&main, "%define base /data\n%include conf.d/storage.conf\n").unwrap();
        let doc = parse_file(&main).unwrap();
        let fs = doc.root.sections().next().unwrap();
        assert_eq!(fs.keys().next().unwrap().value, "/data/Data.fs");
        assert_eq!(*fs.pos.file, dir.path().join("conf.d/storage.conf"));
    }

    #[test]
    fn include_errors() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("a.conf");
        std::fs::write(&main, "\n%include a.conf\n").unwrap();
        let e = parse_file(&main).unwrap_err().to_string();
        assert!(
            e.contains("a.conf:2: %include a.conf:") && e.contains("includes itself"),
            "{e}"
        );

        std::fs::write(&main, "%include missing.conf\n").unwrap();
        let e = parse_file(&main).unwrap_err().to_string();
        assert!(
            e.contains("a.conf:1: %include missing.conf: cannot read"),
            "{e}"
        );

        std::fs::write(&main, "%include http://example.invalid/x.conf\n").unwrap();
        assert!(parse_file(&main)
            .unwrap_err()
            .to_string()
            .contains("URL is not supported"));

        // Sections must be balanced within each file.
        std::fs::write(dir.path().join("open.conf"), "<zeo>\n").unwrap();
        std::fs::write(&main, "%include open.conf\n</zeo>\n").unwrap();
        let e = parse_file(&main).unwrap_err().to_string();
        assert!(
            e.contains("open.conf:1: section <zeo> is never closed"),
            "{e}"
        );
    }

    #[test]
    fn missing_file() {
        let e = parse_file(Path::new("/nonexistent/zeoraid.conf")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e
            .to_string()
            .starts_with("/nonexistent/zeoraid.conf: cannot read configuration"));
    }
}
