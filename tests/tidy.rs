//! Tidy checks on the source itself, in the spirit of rust-analyzer's `xtask/src/tidy.rs`: the layering that
//! ARCHITECTURE.md promises is read from ARCHITECTURE.md and checked against the code, so the two cannot drift.
//!
//! - Every file under `src/` belongs to a row of the module table (`## Modules`); a new top-level module needs a
//!   row of its own.
//! - No file uses a module that the "knows nothing of" column of one of its rows names. That column holds only
//!   module paths in backticks (`tasks::stream_json`), or "every other module" for a leaf; each path must name a
//!   module that exists.
//! - The top-level modules import each other without circles.
//! - Every `.rs` file in `src/`, `tests/` and `benches/` starts with a `//!` doc that says why it exists.
//!
//! Edges are `crate::` paths anywhere in the code (grouped `use` trees included) and `super::` paths at a file's
//! top level; comments and string literals are skipped. Plain text scanning, no parser: the crate's own style
//! (one module per file, `use` at the top) is what makes that enough.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const EVERY_OTHER: &str = "every other module";

/// A module path relative to the crate root, as its components (`["tasks", "stream_json"]`).
type ModPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
enum Forbid {
    Module(ModPath),
    EveryOther,
}

#[derive(Debug)]
struct Row {
    /// Line in ARCHITECTURE.md (1-based), for messages.
    line: usize,
    /// The `module` cell's entries as written (`daemon/`, `config.rs`).
    entries: Vec<String>,
    forbidden: Vec<Forbid>,
}

/// Parses the table under `## Modules`. Errors name the line.
fn parse_table(text: &str) -> Result<Vec<Row>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "## Modules")
        .ok_or("ARCHITECTURE.md has no `## Modules` section with the module table")?;
    let mut table = lines.iter().enumerate().skip(start + 1).skip_while(|(_, l)| !l.trim_start().starts_with('|'));
    let (header_at, header) = table.next().ok_or("ARCHITECTURE.md: `## Modules` has no table")?;
    let cells = split_row(header);
    let column = |name: &str| {
        cells.iter().position(|c| c.eq_ignore_ascii_case(name)).ok_or_else(|| {
            format!("ARCHITECTURE.md:{}: the module table needs a `{name}` column, found {cells:?}", header_at + 1)
        })
    };
    let (module_col, forbid_col) = (column("module")?, column("knows nothing of")?);
    let mut rows = Vec::new();
    for (i, line) in table {
        if !line.trim_start().starts_with('|') {
            break;
        }
        let cells = split_row(line);
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            continue;
        }
        let at = i + 1;
        let cell = |n: usize| {
            cells.get(n).map(String::as_str).ok_or_else(|| format!("ARCHITECTURE.md:{at}: the row has no column {n}"))
        };
        let entries = backticked(cell(module_col)?);
        if entries.is_empty() {
            return Err(format!("ARCHITECTURE.md:{at}: the module cell names no `file.rs` or `dir/`"));
        }
        if let Some(bad) = entries.iter().find(|e| !(e.ends_with(".rs") || e.ends_with('/'))) {
            return Err(format!(
                "ARCHITECTURE.md:{at}: `{bad}` in the module cell is neither a `file.rs` nor a `dir/`"
            ));
        }
        let mut forbidden = Vec::new();
        for item in cell(forbid_col)?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == EVERY_OTHER {
                forbidden.push(Forbid::EveryOther);
                continue;
            }
            let path = item.strip_prefix('`').and_then(|s| s.strip_suffix('`')).filter(|p| is_mod_path(p));
            match path {
                Some(p) => forbidden.push(Forbid::Module(p.split("::").map(String::from).collect())),
                None => {
                    return Err(format!(
                        "ARCHITECTURE.md:{at}: the \"knows nothing of\" cell holds only module paths in backticks \
                         (`tasks::stream_json`) or \"{EVERY_OTHER}\", separated by commas; found {item:?}"
                    ));
                }
            }
        }
        rows.push(Row { line: at, entries, forbidden });
    }
    Ok(rows)
}

fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(String::from).collect()
}

fn is_mod_path(p: &str) -> bool {
    p.split("::").all(|seg| {
        let mut chars = seg.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// The module path of a file relative to `src/` (`daemon/mod.rs` → `daemon`; `main.rs`, `lib.rs` → the root).
fn module_of(rel: &str) -> ModPath {
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    let at_root = parts.is_empty() && (stem == "main" || stem == "lib");
    if stem != "mod" && !at_root {
        parts.push(stem.to_string());
    }
    parts
}

/// Does a module-cell entry cover this file? `x/` and `x.rs` cover module `x` and everything under it;
/// `main.rs` and `lib.rs` cover only themselves.
fn covers(entry: &str, rel: &str) -> bool {
    if entry == "main.rs" || entry == "lib.rs" {
        return rel == entry;
    }
    let entry_mod: ModPath = match entry.strip_suffix('/') {
        Some(dir) => dir.split('/').map(String::from).collect(),
        None => module_of(entry),
    };
    let file_mod = module_of(rel);
    !entry_mod.is_empty() && file_mod.starts_with(&entry_mod)
}

/// Source text with comments, string and char literals blanked out (newlines kept, so offsets stay meaningful).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let rest = &src[i..];
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            while i < b.len() {
                if src[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if src[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if !prev_ident && (rest.starts_with("r#") || rest.starts_with("r\"") || rest.starts_with("br")) {
            let after_r = if rest.starts_with("br") { 2 } else { 1 };
            let hashes = rest[after_r..].bytes().take_while(|&c| c == b'#').count();
            if rest.as_bytes().get(after_r + hashes) == Some(&b'"') {
                let close = format!("\"{}", "#".repeat(hashes));
                let body = i + after_r + hashes + 1;
                i = src[body..].find(&close).map_or(b.len(), |n| body + n + close.len());
                out.push_str("\"\"");
            } else {
                out.push(b[i] as char);
                i += 1;
            }
        } else if b[i] == b'"' || (!prev_ident && rest.starts_with("b\"")) {
            i += if b[i] == b'"' { 1 } else { 2 };
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é'), else a lifetime or label.
            if b.get(i + 1) == Some(&b'\\') {
                i = src[i + 2..].find('\'').map_or(b.len(), |n| i + 2 + n + 1);
                out.push_str("' '");
            } else if let Some(c) = rest[1..].chars().next()
                && rest[1 + c.len_utf8()..].starts_with('\'')
            {
                i += 2 + c.len_utf8();
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(tok.as_bytes()) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        (self.pos > start && !self.s[start].is_ascii_digit())
            .then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// A path tail after `prefix::`, with `{a, b::c}` groups expanded.
    fn tree(&mut self, prefix: &ModPath, out: &mut Vec<ModPath>) {
        if self.eat("{") {
            loop {
                if self.eat("}") {
                    return;
                }
                self.tree(prefix, out);
                // Skip `as name` and anything else up to the next item of the group.
                let mut depth = 0;
                while self.pos < self.s.len() {
                    match self.s[self.pos] {
                        b'{' => depth += 1,
                        b'}' if depth == 0 => break,
                        b'}' => depth -= 1,
                        b',' if depth == 0 => {
                            self.pos += 1;
                            break;
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                if self.pos >= self.s.len() {
                    return;
                }
            }
        }
        if self.eat("*") {
            out.push(prefix.clone());
            return;
        }
        match self.ident() {
            Some(name) if name == "self" => out.push(prefix.clone()),
            Some(name) => {
                let mut path = prefix.clone();
                path.push(name);
                let save = self.pos;
                if self.eat("::") && !self.eat("<") {
                    self.tree(&path, out);
                } else {
                    self.pos = save;
                    out.push(path);
                }
            }
            None => out.push(prefix.clone()),
        }
    }
}

/// Every module path a file's code names, as absolute paths from the crate root. `module` is the file's own.
fn edges(src: &str, module: &ModPath) -> Vec<ModPath> {
    let code = strip(src);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        let word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'$');
        let after_path = i >= 2 && &bytes[i - 2..i] == b"::";
        if word_start && !after_path {
            let mut sc = Scanner { s: bytes, pos: i };
            if code[i..].starts_with("crate") && sc.ident().as_deref() == Some("crate") && sc.eat("::") {
                sc.tree(&Vec::new(), &mut out);
                i = sc.pos.max(i + 1);
                continue;
            }
            let mut sc = Scanner { s: bytes, pos: i };
            if depth == 0 && code[i..].starts_with("super") {
                let mut base = module.clone();
                let mut ok = false;
                loop {
                    let save = sc.pos;
                    if sc.ident().as_deref() == Some("super") && sc.eat("::") {
                        base.pop();
                        ok = true;
                    } else {
                        sc.pos = save;
                        break;
                    }
                }
                if ok {
                    sc.tree(&base, &mut out);
                    i = sc.pos.max(i + 1);
                    continue;
                }
            }
        }
        i += 1;
    }
    out.retain(|p| !p.is_empty());
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Does this module path name a module under `src/`?
fn module_exists(src: &Path, m: &[String]) -> bool {
    let rel = m.join("/");
    !m.is_empty() && (src.join(format!("{rel}.rs")).is_file() || src.join(&rel).is_dir())
}

fn show(m: &[String]) -> String {
    if m.is_empty() { "crate".into() } else { m.join("::") }
}

/// All layering problems of the crate whose `src/` is given, against the table in `architecture`.
fn layering_problems(src: &Path, architecture: &str) -> Vec<String> {
    let rows = match parse_table(architecture) {
        Ok(rows) => rows,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for row in &rows {
        for f in &row.forbidden {
            if let Forbid::Module(m) = f
                && !module_exists(src, m)
            {
                problems.push(format!(
                    "ARCHITECTURE.md:{}: `{}` in \"knows nothing of\" names no module under src/ (renamed or moved? \
                     update the table)",
                    row.line,
                    show(m)
                ));
            }
        }
    }
    let mut files = Vec::new();
    rs_files(src, &mut files);
    // Top-level module → (used top-level module → a file that uses it).
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for path in &files {
        let rel = path.strip_prefix(src).unwrap_or(path).to_string_lossy().replace('\\', "/");
        let module = module_of(&rel);
        let mine: Vec<&Row> = rows.iter().filter(|r| r.entries.iter().any(|e| covers(e, &rel))).collect();
        if mine.is_empty() {
            let top = rel.split('/').next().unwrap_or(&rel);
            let entry = if top.ends_with(".rs") { top.to_string() } else { format!("{top}/") };
            problems.push(format!(
                "src/{rel} is in no row of ARCHITECTURE.md's module table (`## Modules`): add a row for `{entry}` \
                 saying what it owns and what it knows nothing of (module paths in backticks, or \"{EVERY_OTHER}\")"
            ));
            continue;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("src/{rel}: cannot read: {e}"));
                continue;
            }
        };
        let used: BTreeSet<ModPath> = edges(&text, &module).into_iter().collect();
        for edge in &used {
            for row in &mine {
                for f in &row.forbidden {
                    let broken = match f {
                        Forbid::Module(m) => edge.starts_with(m),
                        Forbid::EveryOther => edge.first() != module.first() && module_exists(src, &edge[..1]),
                    };
                    if broken {
                        let what = match f {
                            Forbid::Module(m) => format!("`{}`", show(m)),
                            Forbid::EveryOther => EVERY_OTHER.to_string(),
                        };
                        problems.push(format!(
                            "src/{rel} uses `{}`, but its row (ARCHITECTURE.md:{}, {}) knows nothing of {what}",
                            show(edge),
                            row.line,
                            row.entries.join(", ")
                        ));
                    }
                }
            }
            if let (Some(from), Some(to)) = (module.first(), edge.first())
                && from != to
                && module_exists(src, &edge[..1])
            {
                graph.entry(from.clone()).or_default().entry(to.clone()).or_insert_with(|| format!("src/{rel}"));
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> =
            cycle.windows(2).map(|w| format!("{} → {} (in {})", w[0], w[1], graph[&w[0]][&w[1]])).collect();
        problems.push(format!("top-level modules import each other in a circle: {}", steps.join(", ")));
    }
    problems
}

/// A circle in the graph, as its nodes with the first repeated at the end.
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn module_table_matches_the_imports() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let problems = layering_problems(&root().join("src"), &architecture);
    assert!(problems.is_empty(), "{} layering problem(s):\n  {}", problems.len(), problems.join("\n  "));
}

#[test]
fn every_file_has_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rs_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} .rs files under {}", files.len(), root().display());
    let missing: Vec<String> = files
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
        })
        .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
        .collect();
    assert!(missing.is_empty(), "these files do not start with a `//!` doc that says why they exist: {missing:?}");
}

// The checker checks itself: a rule that could never fire would pass forever.

#[test]
fn edges_come_from_code_only() {
    let src = r#"
use crate::{a::B, c::{self, d::E as F}, g::*};
use super::sibling::Thing;
// crate::commented::out
/* crate::block /* nested */ crate::still */
fn f() { let _ = "crate::in_a_string"; let _ = r"crate::raw"; let _ = '"'; crate::inline::call(); }
mod tests { use super::*; }
fn g<'a>(x: &'a str) -> crate::h::Ret<'a> { crate::i::j::<u8>(); x }
"#;
    let got: BTreeSet<String> = edges(src, &vec!["m".into(), "n".into()]).iter().map(|p| show(p)).collect();
    let want: BTreeSet<String> =
        ["a::B", "c", "c::d::E", "g", "m::sibling::Thing", "inline::call", "h::Ret", "i::j"].map(String::from).into();
    assert_eq!(got, want);
}

#[test]
fn a_forbidden_edge_an_unknown_module_and_a_circle_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("lib.rs", "//! root\npub mod a;\npub mod b;\npub mod leaf;\npub mod new;\n");
    write("a/mod.rs", "//! a\npub mod inner;\nuse crate::b::X;\n");
    write("a/inner.rs", "//! a's insides\n");
    write("b.rs", "//! b\nuse crate::a::f;\n");
    write("leaf.rs", "//! leaf\nfn f() { crate::a::inner::g(); }\n");
    write("new.rs", "//! not in the table\n");
    let table = "## Modules\n\n| module | owns | knows nothing of |\n|---|---|---|\n\
        | `lib.rs` | the root | |\n\
        | `a/` | a | `leaf` |\n\
        | `b.rs` | b | `a::inner` |\n\
        | `leaf.rs` | a leaf | every other module |\n";
    let problems = layering_problems(src, table).join("\n");
    assert!(problems.contains("src/leaf.rs uses `a::inner::g`"), "{problems}");
    assert!(problems.contains("src/new.rs is in no row") && problems.contains("add a row for `new.rs`"), "{problems}");
    assert!(problems.contains("in a circle: a → b (in src/a/mod.rs), b → a (in src/b.rs)"), "{problems}");
    assert!(!problems.contains("src/b.rs uses"), "b uses `a`, not `a::inner`: {problems}");

    let prose = table.replace("`a::inner`", "the insides of a");
    let problems = layering_problems(src, &prose).join("\n");
    assert!(problems.contains("only module paths in backticks"), "{problems}");
    let gone = table.replace("`a::inner`", "`a::gone`");
    let problems = layering_problems(src, &gone).join("\n");
    assert!(problems.contains("`a::gone` in \"knows nothing of\" names no module"), "{problems}");
}
