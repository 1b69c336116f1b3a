//! Embeds the browser receiver (`../receiver-web/`) in the supervisor binary, so the pages work from
//! any working directory. Generates `$OUT_DIR/assets.rs` with one `(path, bytes)` entry per file;
//! tests, node_modules and npm manifests are left out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const SKIP: &[&str] = &["node_modules", "tests", "package.json", "package-lock.json"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../receiver-web");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    if root.is_dir() {
        collect(&root, &root, &mut files);
    }
    files.sort();
    let mut code = String::from("/// Every file of receiver-web/, by path relative to it.\npub static ASSETS: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("assets.rs");
    std::fs::write(out, code).unwrap();
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if SKIP.contains(&name.as_str()) || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.push((rel, path.canonicalize().unwrap()));
        }
    }
}
