//! Embeds the browser pages (`../receiver-web/`, and `../monitor/` under `monitor/`) in the
//! supervisor binary, so they work from any working directory. Generates `$OUT_DIR/assets.rs` with
//! one `(path, bytes)` entry per file; tests, benches, node_modules, npm manifests and READMEs are
//! left out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const SKIP: &[&str] = &[
    "node_modules",
    "tests",
    "bench",
    "package.json",
    "package-lock.json",
    "README.md",
];

fn main() {
    // Read at run time: `env!` would bake in the directory the build script was compiled in, and a
    // target directory shared by two checkouts then embeds the other one's pages (or none).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let top = Path::new(&manifest).join("..");
    let mut files = Vec::new();
    for (dir, prefix) in [("receiver-web", ""), ("monitor", "monitor/")] {
        let root = top.join(dir);
        println!("cargo:rerun-if-changed={}", root.display());
        if root.is_dir() {
            let start = files.len();
            collect(&root, &root, &mut files);
            for (rel, _) in &mut files[start..] {
                rel.insert_str(0, prefix);
            }
        }
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
