//! The guided tour cannot rot silently (issue #20): every link in `docs/tour.md` (and in the
//! other documents that point into the code the same way) must name a file that exists, and a
//! link whose text is a `symbol` in backticks must name a symbol that file defines.
//!
//! A tour link looks like ``[`Mm::handle_fault`](../kernel/src/mm/area.rs)``: the file by path,
//! the place in it by **symbol**, never by line number (every change breaks line numbers, and
//! this check could not tell a moved line from a right one). A qualified name `Type::item` needs
//! both: the type (or module, or trait) and the item defined in the file. A link to a heading
//! of another document (`ARCHITECTURE.md#locks`) needs that heading.
//!
//! "Defined" is read from the text, not from a compiler: a Rust item (`fn`, `struct`, `enum`,
//! `trait`, `type`, `const`, `static`, `mod`, `macro_rules!`, an enum variant, a field), an
//! assembly label (`name:` in a `global_asm!`), a C function or macro, a Makefile target.
//! That is enough to catch a renamed or deleted symbol, which is what rots a tour.

use std::path::{Path, PathBuf};

/// The documents whose links are checked.
const DOCUMENTS: &[&str] = &["docs/tour.md"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// One `[text](target)` link of a markdown document.
#[derive(Debug, PartialEq)]
struct Link {
    text: String,
    target: String,
    line: usize,
}

/// The links of a markdown text, outside fenced code blocks and inline code.
fn links(markdown: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (number, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'[' {
                // The text runs to the matching `]` (backticked text may hold brackets).
                let mut depth = 0;
                let mut in_code = false;
                let mut j = i;
                let mut close = None;
                while j < bytes.len() {
                    match bytes[j] {
                        b'`' => in_code = !in_code,
                        b'[' if !in_code => depth += 1,
                        b']' if !in_code => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if let Some(close) = close {
                    if bytes.get(close + 1) == Some(&b'(') {
                        if let Some(end) = line[close + 2..].find(')') {
                            out.push(Link {
                                text: line[i + 1..close].to_string(),
                                target: line[close + 2..close + 2 + end].to_string(),
                                line: number + 1,
                            });
                            i = close + 2 + end;
                            continue;
                        }
                    }
                }
            } else if bytes[i] == b'`' {
                // Skip inline code that is not a link's text.
                if let Some(end) = line[i + 1..].find('`') {
                    i += end + 2;
                    continue;
                }
            }
            i += 1;
        }
    }
    out
}

/// Is `name` defined in `source` (a file of the language its `extension` says)?
fn defines(source: &str, extension: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    // Every occurrence of `name` as a whole word, with the text before and after it on its line.
    let occurrences = source.lines().flat_map(|line| {
        line.match_indices(name).filter_map(move |(at, _)| {
            let before = &line[..at];
            let after = &line[at + name.len()..];
            let whole = !before.ends_with(is_ident) && !after.starts_with(is_ident);
            whole.then_some((before, after))
        })
    });
    let rust_keywords = ["fn", "struct", "enum", "trait", "type", "const", "static", "mod", "macro_rules!", "union", "impl", "for"];
    for (before, after) in occurrences.collect::<Vec<_>>() {
        let before_trimmed = before.trim_end();
        let last_word = before_trimmed.rsplit(|c: char| c.is_whitespace() || c == '<').next().unwrap_or("");
        match extension {
            "rs" => {
                // `fn name`, `struct name`, `impl Trait for name`, …
                if rust_keywords.contains(&last_word) || last_word.ends_with("fn") {
                    return true;
                }
                // An enum variant or a struct field: `    Name,` / `    Name(` / `    Name {` /
                // `    pub name: T`.
                let field_or_variant = before.trim().is_empty() || before.trim() == "pub" || before.trim() == "pub(crate)";
                if field_or_variant && (after.starts_with(',') || after.starts_with('(') || after.starts_with(" {") || after.starts_with(':') || after.starts_with(" =")) {
                    return true;
                }
                // An assembly label: `name:` alone on its line, or `.global name`.
                if (before.trim().is_empty() && after.trim() == ":") || before_trimmed.ends_with(".global") {
                    return true;
                }
            }
            "c" | "h" | "S" => {
                // A function definition or declaration (`type name(` at the start of a line),
                // a macro, a struct or a variable at file level.
                if !before.starts_with(char::is_whitespace) && !before.is_empty() && (after.starts_with('(') || after.starts_with(" =") || after.starts_with('[') || after.starts_with(';')) {
                    return true;
                }
                if before_trimmed.ends_with("#define") || before_trimmed.ends_with("struct") {
                    return true;
                }
            }
            "mk" => {
                // A Makefile target: `name:` at the start of a line.
                if before.is_empty() && after.starts_with(':') {
                    return true;
                }
            }
            // Any other file (a script, a TOML file): a whole-word mention is enough.
            _ => return true,
        }
    }
    false
}

/// Does `symbol` name the module that `file` is (`paging` for `…/paging.rs`, `mm::numa` for
/// `…/mm/numa.rs`, `task` for `…/task/mod.rs`)?
fn names_the_module(symbol: &str, file: &Path) -> bool {
    let mut module: Vec<String> = file.with_extension("").components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if module.last().is_some_and(|m| m == "mod" || m == "lib") {
        module.pop();
    }
    let parts: Vec<&str> = symbol.split("::").collect();
    module.len() >= parts.len() && module[module.len() - parts.len()..].iter().zip(&parts).all(|(a, b)| a == b)
}

/// The headings of a markdown document as GitHub makes anchors of them.
fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// What is wrong with one link of the document at `doc` (None: nothing).
fn check(doc: &Path, link: &Link) -> Option<String> {
    let target = link.target.as_str();
    if target.starts_with("http://") || target.starts_with("https://") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() { doc.to_path_buf() } else { doc.parent().unwrap().join(path) };
    let Ok(text) = std::fs::read_to_string(&file) else {
        return if file.is_dir() { None } else { Some(format!("line {}: {target}: no such file", link.line)) };
    };
    if let Some(anchor) = anchor {
        if anchor.chars().all(|c| c.is_ascii_digit() || c == 'L' || c == '-') && anchor.starts_with('L') {
            return Some(format!("line {}: {target}: a line number, which every change breaks; link a symbol", link.line));
        }
        if !anchors(&text).iter().any(|a| a == anchor) {
            return Some(format!("line {}: {target}: no heading makes the anchor #{anchor}", link.line));
        }
    }
    let symbol = link.text.trim();
    if symbol.len() > 2 && symbol.starts_with('`') && symbol.ends_with('`') && !path.is_empty() {
        let symbol = symbol.trim_matches('`').trim_end_matches("()").trim_end_matches('!');
        let extension = file.extension().and_then(|e| e.to_str()).unwrap_or(if file.ends_with("Makefile") { "mk" } else { "" });
        if extension == "md" {
            return None;
        }
        if names_the_module(symbol, &file) {
            return None;
        }
        for part in symbol.split("::") {
            if !defines(&text, extension, part) {
                return Some(format!("line {}: `{symbol}`: {path} defines no `{part}`", link.line));
            }
        }
    }
    None
}

#[test]
fn every_tour_link_names_a_file_and_a_symbol_defined_in_it() {
    let root = repo_root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in DOCUMENTS {
        let path = root.join(doc);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
        for link in links(&text) {
            checked += 1;
            if let Some(problem) = check(&path, &link) {
                problems.push(format!("{doc} {problem}"));
            }
        }
    }
    assert!(checked >= 20, "the tour has only {checked} links: is it there?");
    assert!(problems.is_empty(), "{} broken tour links:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_checker_finds_links_and_tells_defined_from_missing() {
    let md = "See [`Mm::fork`](../kernel/src/mm/address_space.rs) and [the map](ARCHITECTURE.md#locks).\n```\n[not](a link)\n```\n";
    let found = links(md);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].text, "`Mm::fork`");
    assert_eq!(found[0].target, "../kernel/src/mm/address_space.rs");
    assert_eq!(found[1].target, "ARCHITECTURE.md#locks");
    let rust = "pub struct Mm {\n    pub root: u64,\n}\nimpl Mm {\n    pub fn fork(&mut self) {}\n}\nenum E {\n    Alpha,\n    Beta(u8),\n}\nglobal_asm!(\"\npikku_entry:\n\");\n";
    for name in ["Mm", "fork", "root", "Alpha", "Beta", "pikku_entry"] {
        assert!(defines(rust, "rs", name), "{name} is defined");
    }
    for name in ["fo", "Gamma", "self", "u64x"] {
        assert!(!defines(rust, "rs", name), "{name} is not defined");
    }
    let c = "static int counter;\nint main(int argc, char **argv)\n{\n    helper(1);\n}\n#define PKEY_BITS 4\n";
    assert!(defines(c, "c", "main") && defines(c, "c", "PKEY_BITS") && defines(c, "c", "counter"));
    assert!(!defines(c, "c", "helper"), "a call is not a definition");
    assert!(names_the_module("mm::numa", Path::new("/r/kernel/src/mm/numa.rs")));
    assert!(names_the_module("task", Path::new("/r/kernel/src/task/mod.rs")));
    assert!(!names_the_module("mm::area", Path::new("/r/kernel/src/mm/numa.rs")));
    assert_eq!(anchors("## One call, end to end: `pkey_alloc(0, 1)`\n# Locks"), vec!["one-call-end-to-end-pkey_alloc0-1", "locks"]);
}
