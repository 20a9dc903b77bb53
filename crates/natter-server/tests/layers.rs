//! The server's modules read bottom-up: every module uses only modules below it in
//! [`LAYERS`], so there is no import circle and no import from a lower layer back up.
//!
//! The sources are read as text: every `crate::…` and `super::…` path outside comments and
//! unit-test modules is an import of the module it names (the longest prefix that is a
//! module file). A new module must be given its place here, which is also where
//! ARCHITECTURE.md's picture of the layers comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of natter-server, bottom-up. The lines group them into the layers that
/// ARCHITECTURE.md shows; within a line, too, a module uses only those before it.
const LAYERS: &[&[&str]] = &[
    &[
        "stats",
        "throttle",
        "outbox",
        "client_id",
        "event",
        "tls",
        "shape",
        "account",
        "history",
        "chathistory",
        "kept",
        "watch",
        "whowas",
    ],
    &["backplane"],
    &[
        "hub::audience",
        "hub::modes",
        "hub::names",
        "hub",
        "hub::linger",
        "hub::mirror",
        "hub::moderation",
        "hub::typing",
        "hub::watch",
    ],
    &["cluster"],
    &["config"],
    &["handler", "claim"],
    &["session", "irc", "admission"],
    &[
        "transport::alarm",
        "transport::wire",
        "transport::rewind",
        "transport::tls",
        "transport::websocket",
        "transport::driver",
        "transport::shared",
        "transport::http",
        "transport::connection",
        "transport::accept",
        "transport",
    ],
    &["server"],
    &["settings"],
];

/// The module a source file is, by its path under `src/` (`None` for the crate roots).
fn module_of(rel: &str) -> Option<String> {
    let m = rel.strip_suffix(".rs")?;
    if m == "lib" || m == "main" {
        return None;
    }
    Some(m.trim_end_matches("/mod").replace('/', "::"))
}

/// The source without comments and without its unit tests (the `#[cfg(test)] mod tests`
/// that closes a file, by this codebase's habit).
fn code_of(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a piece of code names after `prefix` (`crate::` or `super::`),
/// brace groups expanded one level: `super::{http, tls}` names `http` and `tls`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let segs = |s: &str| -> Vec<String> {
            s.split("::")
                .map(|p| {
                    p.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|p| !p.is_empty())
                .collect()
        };
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(segs(item.trim()));
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out.push(segs(&rest[..end]));
        }
    }
    out
}

/// The module that `segs` (a path below `base`) lands in: its longest prefix that is one.
fn resolve(base: &[String], segs: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut found = None;
    for n in 1..=segs.len() {
        let mut p = base.to_vec();
        p.extend_from_slice(&segs[..n]);
        let name = p.join("::");
        if modules.contains(&name) {
            found = Some(name);
        }
    }
    found.or_else(|| (!base.is_empty()).then(|| base.join("::")))
}

/// Every module and the modules it uses.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut sources = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if let Some(m) = module_of(&rel) {
            sources.insert(m, code_of(&std::fs::read_to_string(&f).unwrap()));
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (m, code) in &sources {
        let mut uses = BTreeSet::new();
        for segs in paths_after(code, "crate::") {
            if let Some(t) = resolve(&[], &segs, &modules) {
                uses.insert(t);
            }
        }
        let parent: Vec<String> = match m.rsplit_once("::") {
            Some((p, _)) => p.split("::").map(str::to_owned).collect(),
            None => Vec::new(),
        };
        if !parent.is_empty() {
            for segs in paths_after(code, "super::") {
                if let Some(t) = resolve(&parent, &segs, &modules) {
                    uses.insert(t);
                }
            }
        }
        // Children named by a relative path (`use audience::Seat;` in `hub`).
        let own: Vec<String> = m.split("::").map(str::to_owned).collect();
        for child in modules
            .iter()
            .filter_map(|c| c.strip_prefix(&format!("{m}::")))
        {
            if !child.contains("::") && !paths_after(code, &format!("{child}::")).is_empty() {
                let mut p = own.clone();
                p.push(child.to_owned());
                uses.insert(p.join("::"));
            }
        }
        uses.remove(m);
        graph.insert(m.clone(), uses);
    }
    graph
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let graph = imports();
    let order: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    let rank = |m: &str| order.iter().position(|o| *o == m);
    let unplaced: Vec<&String> = graph.keys().filter(|m| rank(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules without a place in LAYERS: {unplaced:?}"
    );
    let gone: Vec<&&str> = order.iter().filter(|m| !graph.contains_key(**m)).collect();
    assert!(
        gone.is_empty(),
        "LAYERS names modules that are gone: {gone:?}"
    );
    let mut upward = Vec::new();
    for (m, uses) in &graph {
        for u in uses {
            if rank(u) >= rank(m) {
                upward.push(format!("{m} -> {u}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down a layer: {upward:#?}"
    );
}

#[test]
fn the_checker_sees_imports() {
    let graph = imports();
    let uses = |m: &str| graph.get(m).cloned().unwrap_or_default();
    assert!(uses("hub").contains("outbox"), "{:?}", uses("hub"));
    assert!(uses("hub").contains("hub::audience"));
    assert!(uses("transport::connection").contains("transport::http"));
    assert!(uses("transport::connection").contains("session"));
    assert!(uses("hub::mirror").contains("hub"));
    let groups = paths_after("use super::{http, tls};\nx = crate::a::B;", "super::");
    assert_eq!(groups, [vec!["http".to_owned()], vec!["tls".to_owned()]]);
}
