//! The house's rules, checked on the source: no import cycle between files, `store/` free of
//! the network, no module importing a command, no function over 80 lines. Lists what
//! breaks them: `cargo test --test suite layers -- --nocapture` prints the import graph's
//! cycles (none) and the longest functions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file of the library under `src/`, by its module path (`chain::escrow::abi`,
/// `tick`, ...; the crate root, `lib.rs`, is `""`). `main.rs` is the binary, a crate of its
/// own that only uses the library.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path != src.join("main.rs") {
                out.insert(
                    module_of(&src, &path),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn module_of(src: &Path, path: &Path) -> String {
    let rel: PathBuf = path.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its `#[cfg(test)]` items (what the
/// build imports): each such item is cut alone (`mod tests { ... }`, `mod testdata;`, a
/// function), so code after it is kept.
fn code(text: &str) -> String {
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let end = match (item.find('{'), item.find(';')) {
            (Some(brace), semi) if semi.is_none_or(|s| brace < s) => {
                let mut depth = 0;
                let mut close = item.len();
                for (i, c) in item[brace..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                close = brace + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                close
            }
            (_, Some(semi)) => semi + 1,
            _ => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every path `crate::...`, `super::...` or `self::...` names, and every path that starts
/// with one of `children` (the file's own child modules, named bare: `config::x` in
/// `lib.rs`, `send::X` in `billing/mod.rs`), use trees expanded (`a::{b, c::d}`).
fn paths(code: &str, children: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut starts: Vec<(usize, String)> = ["crate::", "super::", "self::"]
        .iter()
        .flat_map(|p| code.match_indices(p).map(|(i, _)| (i, String::new())))
        .collect();
    for child in children {
        let bare = format!("{child}::");
        starts.extend(
            code.match_indices(&bare)
                .map(|(i, _)| (i, "self::".to_string())),
        );
    }
    for (i, prefix) in starts {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c == '$' || c == ':' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        expand(&code[i..], prefix, &mut out);
    }
    out
}

/// The direct children of module `m` among the known modules, by their last name.
fn children(m: &str, known: &BTreeMap<String, String>) -> Vec<String> {
    known
        .keys()
        .filter_map(|k| {
            let rest = if m.is_empty() {
                k.as_str()
            } else {
                k.strip_prefix(m)?.strip_prefix("::")?
            };
            (!rest.is_empty() && !rest.contains("::")).then(|| rest.to_string())
        })
        .collect()
}

/// Expands the use tree at the start of `rest` after `prefix`.
fn expand(rest: &str, prefix: String, out: &mut Vec<String>) {
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    let head = format!("{prefix}{}", &rest[..end]);
    if rest[end..].starts_with('{') && head.ends_with("::") {
        let body = &rest[end + 1..];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(body[start..i].trim(), head.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(body[start..i].trim(), head.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
    } else {
        out.push(head.trim_end_matches("::").to_string());
    }
}

/// The file a path lands in: its longest prefix that is a module.
fn target(from: &str, path: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let mut here: Vec<&str> = from.split("::").filter(|p| !p.is_empty()).collect();
    for (i, p) in path.split("::").enumerate() {
        match p {
            "crate" if i == 0 => here.clear(),
            "super" => {
                here.pop();
            }
            "self" => {}
            _ => parts.push(p),
        }
    }
    let full: Vec<&str> = here.iter().copied().chain(parts).collect();
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| known.contains_key(m))
        .filter(|m| m != from)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    known
        .iter()
        .map(|(m, text)| {
            let to = paths(&code(text), &children(m, &known))
                .iter()
                .filter_map(|p| target(m, p, &known))
                .collect();
            (m.clone(), to)
        })
        .collect()
}

/// The cycles of the graph (each once, as the files on it).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for start in g.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in g.get(&at).into_iter().flatten() {
                if next == start {
                    let mut c = path.clone();
                    let min = c.iter().enumerate().min_by_key(|(_, m)| *m).unwrap().0;
                    c.rotate_left(min);
                    found.insert(c);
                } else if !path.contains(next) && next > start {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_import_cycle_between_files() {
    let g = graph();
    assert!(g.len() > 50, "the source was not found: {} files", g.len());
    // The three ways the graph once missed imports: the crate root's code after its
    // first `#[cfg(test)]`, a file's own children named bare, and the crate root itself.
    for (from, to) in [
        ("tick", "store"),
        ("billing", "billing::pass"),
        ("cmd::reconcile", ""),
    ] {
        assert!(
            g[from].contains(to),
            "the graph misses {from:?} -> {to:?}: {:?}",
            g[from]
        );
    }
    assert!(!g[""].is_empty(), "the crate root's imports are missing");
    let cycles = cycles(&g);
    println!("{} files, {} import cycles", g.len(), cycles.len());
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_sql_layer_knows_no_network_and_nobody_imports_a_command() {
    let g = graph();
    let network = [
        "net",
        "chain::gateway",
        "chain::escrow::client",
        "renewal::stream",
        "billing",
        "tick",
        "ops",
        "serve",
        "cmd",
        "config",
        "cli",
    ];
    let mut wrong = Vec::new();
    for (from, to) in &g {
        for t in to {
            let under = |m: &str| t == m || t.starts_with(&format!("{m}::"));
            if from.starts_with("store") && network.iter().any(|m| under(m)) {
                wrong.push(format!("{from} -> {t}"));
            }
            let commands = from == "cli" || from == "cmd" || from.starts_with("cmd::");
            if !commands && under("cmd") {
                wrong.push(format!("{from} -> {t} (a command)"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
}

/// Function lengths: from the `fn` line to the closing brace at its indentation.
fn functions(text: &str) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or(t.strip_prefix("pub "))
            .unwrap_or(t);
        let Some(name) = t.strip_prefix("fn ") else {
            continue;
        };
        let name = name.split(['(', '<']).next().unwrap_or("").to_string();
        if line.ends_with('}') || line.ends_with(';') {
            out.push((1, i + 1, name));
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let close = format!("{indent}}}");
        let Some(end) = (i + 1..lines.len()).find(|&j| lines[j] == close) else {
            continue;
        };
        out.push((end - i + 1, i + 1, name));
    }
    out
}

#[test]
fn no_function_is_longer_than_a_screen() {
    let mut all: Vec<(usize, String)> = Vec::new();
    for (module, text) in modules() {
        for (len, line, name) in functions(&text) {
            all.push((len, format!("{module}:{line} {name}")));
        }
    }
    all.sort_by(|a, b| b.cmp(a));
    assert!(all.len() > 300, "functions not found: {}", all.len());
    println!("longest functions: {:#?}", &all[..5]);
    let long: Vec<_> = all.iter().filter(|(len, _)| *len > 80).collect();
    assert!(long.is_empty(), "functions over 80 lines: {long:#?}");
}

/// The layer table of `lib.rs`, top to bottom: for each row, the module paths its first
/// cell names (`name` or [`name`]).
fn layer_table() -> Vec<Vec<String>> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter_map(|row| row.split(" | ").next())
        .filter(|cell| cell.contains('`'))
        .map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(|name| name.trim_matches(['[', ']']).to_string())
                .collect()
        })
        .collect()
}

/// The row of a module: the row naming its longest prefix.
fn row_of(module: &str, table: &[Vec<String>]) -> Option<usize> {
    table
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (i, n)))
        .filter(|(_, n)| module == n.as_str() || module.starts_with(&format!("{n}::")))
        .max_by_key(|(_, n)| n.len())
        .map(|(i, _)| i)
}

#[test]
fn the_layer_table_of_lib_rs_is_true() {
    let table = layer_table();
    assert!(table.len() > 8, "the table was not found: {table:?}");
    let g = graph();
    let mut unplaced = BTreeSet::new();
    let mut upward = Vec::new();
    for (from, to) in &g {
        // The crate root re-exports; macros `#[macro_export]`ed land there. `testdata`
        // is the unit tests' own.
        if from.is_empty() || from == "testdata" {
            continue;
        }
        let Some(here) = row_of(from, &table) else {
            unplaced.insert(from.clone());
            continue;
        };
        for t in to.iter().filter(|t| !t.is_empty()) {
            match row_of(t, &table) {
                Some(there) if there < here => upward.push(format!("{from} -> {t}")),
                Some(_) => {}
                None => {
                    unplaced.insert(t.clone());
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules the table does not name: {unplaced:?}"
    );
    assert!(upward.is_empty(), "imports up the table: {upward:#?}");
}
