//! The stages meet only in the lake (issue 25): `source`, `model` and `sink`
//! use `lake`, never each other; `lake` uses no stage; `report` reads through
//! `model`'s queries. `cli` wires them together. Read from the source text,
//! so the rule holds by itself.

use std::path::{Path, PathBuf};

/// Each part of the crate and the parts it must not name.
const FORBIDDEN: [(&str, &[&str]); 5] = [
    ("lake", &["source", "model", "sink", "report", "cli", "status", "config"]),
    ("source", &["model", "sink", "report", "cli", "status"]),
    ("model", &["source", "sink", "report", "cli", "status"]),
    ("sink", &["source", "model", "report", "cli", "status"]),
    ("report", &["source", "sink", "cli", "status"]),
];

/// `file:line: names crate::<x>` for each forbidden path in `text`.
fn violations(file: &str, text: &str, forbidden: &[&str]) -> Vec<String> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        for other in forbidden {
            for path in [format!("crate::{other}"), format!("tunelake::{other}")] {
                let hits = line.match_indices(&path).filter(|(i, _)| {
                    let next = line[i + path.len()..].chars().next();
                    !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hits.count() > 0 {
                    out.push(format!("{file}:{}: names {path}", n + 1));
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_stages_meet_only_in_the_lake() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = vec![];
    let mut files = 0;
    for (part, forbidden) in FORBIDDEN {
        for file in rust_files(&src.join(part)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let name = file.strip_prefix(&src).unwrap().display().to_string();
            found.extend(violations(&name, &text, forbidden));
            files += 1;
        }
    }
    assert!(files > 40, "read {files} files");
    assert!(found.is_empty(), "a stage names another (use a type in lake/ instead):\n{}", found.join("\n"));
}

#[test]
fn the_rule_catches_a_stage_naming_another() {
    let text = "use crate::lake::Layout;\nuse crate::model::build::PartHook;\n// crate::modeling is another name\n";
    assert_eq!(violations("sink/x.rs", text, &["model"]), ["sink/x.rs:2: names crate::model"]);
}
