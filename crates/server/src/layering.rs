//! The crate's layering, checked by a test: imports between top-level modules go one way
//! (`http` → `flows` → `domain` and `store`), with no cycle anywhere, and the domain stays pure.
//! The check reads the sources (a `crate::x` path anywhere in module `y`'s files is an edge
//! y → x), so it also catches a full path written inline, not only `use` lines.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The top-level modules `lib.rs` declares.
    fn modules(src: &Path) -> BTreeSet<String> {
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        lib.lines()
            .filter_map(|l| l.trim().strip_prefix("pub mod "))
            .chain(lib.lines().filter_map(|l| l.trim().strip_prefix("mod ")))
            .map(|m| m.trim_end_matches(';').to_owned())
            .collect()
    }

    /// Every `crate::name` and `crate::{a, b::c}` in `text`: the first segment of each path.
    fn crate_refs(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `some_crate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    out.insert(name);
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
        out
    }

    /// module → the modules its files name (comments included: a doc link is a dependency
    /// of the reader, and keeping them honest costs nothing).
    fn graph() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, String>) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mods = modules(&src);
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if !mods.contains(&top) {
                continue; // lib.rs, main.rs
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let e = edges.entry(top.clone()).or_default();
            for r in crate_refs(&text) {
                if r != top && mods.contains(&r) {
                    e.insert(r);
                }
            }
            texts.entry(top).or_default().push_str(&text);
        }
        (edges, texts)
    }

    fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            n: &str,
            edges: &BTreeMap<String, BTreeSet<String>>,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = stack.iter().position(|s| s == n) {
                let mut cycle = stack[i..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            if done.contains(n) {
                return None;
            }
            stack.push(n.to_owned());
            for m in edges.get(n).into_iter().flatten() {
                if let Some(c) = visit(m, edges, stack, done) {
                    return Some(c);
                }
            }
            stack.pop();
            done.insert(n.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        edges
            .keys()
            .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
    }

    #[test]
    fn the_cycle_finder_finds_cycles() {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        e.entry("a".into()).or_default().insert("b".into());
        e.entry("b".into()).or_default().insert("c".into());
        assert_eq!(find_cycle(&e), None);
        e.entry("c".into()).or_default().insert("a".into());
        assert_eq!(find_cycle(&e).unwrap().join(" -> "), "a -> b -> c -> a");
        assert_eq!(
            crate_refs("use crate::{x::Y, z}; crate::w::f(); other_crate::q; crate::v"),
            ["v", "w", "x", "z"].iter().map(|s| s.to_string()).collect()
        );
    }

    #[test]
    fn top_level_modules_import_each_other_without_a_cycle() {
        let (edges, _) = graph();
        if let Some(cycle) = find_cycle(&edges) {
            panic!(
                "module import cycle: {} (imports go http -> flows -> domain and store; move the shared piece down)",
                cycle.join(" -> ")
            );
        }
    }

    #[test]
    fn layers_point_one_way_and_the_domain_is_pure() {
        let (edges, texts) = graph();
        let forbidden: [(&str, &[&str]); 3] = [
            ("domain", &["http", "flows", "store", "state", "clock"]),
            ("flows", &["http"]),
            ("store", &["http", "flows", "domain", "state"]),
        ];
        for (module, never) in forbidden {
            let uses = edges.get(module).cloned().unwrap_or_default();
            for n in never {
                assert!(
                    !uses.contains(*n),
                    "{module} must not import {n} (its imports: {uses:?})"
                );
            }
        }
        let domain: String = texts
            .get("domain")
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        for word in [
            "axum",
            "sqlx",
            "rusqlite",
            "SystemTime",
            "Instant::now",
            "tokio",
        ] {
            assert!(
                !domain.contains(word),
                "the domain must stay pure: it mentions `{word}`"
            );
        }
    }
}
