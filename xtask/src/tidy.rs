//! Tidy checks of the repository's own sources, run with the workspace's tests: every Rust
//! file says what it is in a `//!` comment and every JavaScript file (the web UI's modules
//! under `crates/herald/assets/` among them) in a leading comment, no text points at a
//! document the repository does not have, and no source file (Rust or JavaScript) grows past
//! 800 lines of non-test code (the files over it today have a ceiling each until they are
//! split).

#[cfg(test)]
mod tests {
    use std::{
        fs,
        path::{Path, PathBuf},
    };

    /// Most lines of non-test code (those before a file's `#[cfg(test)]` module) in one
    /// source file: about what a newcomer reads in one sitting.
    const MAX_LINES: usize = 800;

    /// Files over [`MAX_LINES`] today, each with the most it may have until it is split.
    /// A file leaves this list once it fits; the check fails when one grows.
    const OVERSIZED: &[(&str, usize)] = &[
        // The browser client stays one file on purpose: apps import it from `/herald.js` or
        // copy it next to their own code, and it starts itself as a module SharedWorker from
        // its own URL, so it must not depend on sibling modules.
        ("crates/herald/assets/herald.js", 1_132),
    ];

    /// Folders whose files are not the repository's own sources.
    const SKIPPED_DIRS: &[&str] = &["target", "node_modules", ".git", "artifacts"];

    /// Extensions of the text files checked for references.
    const TEXT: &[&str] = &[
        "rs", "js", "mjs", "md", "toml", "sh", "py", "html", "css", "sql", "yml",
    ];

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the workspace root")
            .to_owned()
    }

    /// Every file under the workspace root with one of `extensions`, as paths relative to it.
    fn files(extensions: &[&str]) -> Vec<PathBuf> {
        fn walk(root: &Path, dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).expect("read a folder") {
                let path = entry.expect("a folder entry").path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if path.is_dir() {
                    if !SKIPPED_DIRS.contains(&name) {
                        walk(root, &path, extensions, out);
                    }
                } else if path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.contains(&e))
                {
                    out.push(path.strip_prefix(root).expect("under the root").to_owned());
                }
            }
        }
        let root = root();
        let mut out = Vec::new();
        walk(&root, &root, extensions, &mut out);
        out.sort();
        out
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(root().join(path)).expect("read a source file")
    }

    #[test]
    fn every_rust_file_starts_with_a_module_comment() {
        let missing: Vec<_> = files(&["rs"])
            .into_iter()
            .filter(|path| !read(path).starts_with("//!"))
            .collect();
        assert!(missing.is_empty(), "no `//!` first line: {missing:?}");
    }

    #[test]
    fn every_javascript_file_starts_with_a_comment() {
        let missing: Vec<_> = files(&["js", "mjs"])
            .into_iter()
            .filter(|path| {
                let text = read(path);
                !(text.starts_with("// ") || text.starts_with("/**"))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "no leading `//` or `/**` comment saying what the module is: {missing:?}"
        );
    }

    #[test]
    fn no_text_points_at_documents_outside_the_repository() {
        // Spelled in pieces, so that this file does not match itself.
        let outside = [
            ["STYLE", ".md"].concat(),
            ["PRODUCT", ".md"].concat(),
            ["../", "shared"].concat(),
            ["the ", "seeds"].concat(),
            ["the ", "seed "].concat(),
            ["seed ", "00"].concat(),
            ["seed-", "00"].concat(),
            ["the ", "issue "].concat(),
            ["the ", "issue'"].concat(),
            ["the ", "issue,"].concat(),
            ["the ", "issue."].concat(),
        ];
        let mut found = Vec::new();
        for path in files(TEXT) {
            let text = read(&path).to_lowercase();
            for (number, line) in text.lines().enumerate() {
                for needle in &outside {
                    if line.contains(&needle.to_lowercase()) {
                        found.push(format!("{}:{}: {needle}", path.display(), number + 1));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "references to outside documents:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn no_source_file_grows_past_its_budget() {
        let mut over = Vec::new();
        let mut fits = Vec::new();
        for path in files(&["rs", "js", "mjs"]) {
            let name = path.to_string_lossy().replace('\\', "/");
            if name.contains("/tests/") || name.starts_with("tests/") {
                continue; // Test code.
            }
            let text = read(&path);
            let lines = text
                .lines()
                .take_while(|line| line.trim() != "#[cfg(test)]")
                .count();
            let budget = OVERSIZED
                .iter()
                .find(|(file, _)| *file == name)
                .map_or(MAX_LINES, |&(_, most)| most);
            if lines > budget {
                over.push(format!("{name}: {lines} lines (at most {budget})"));
            }
            if budget > MAX_LINES && lines <= MAX_LINES {
                fits.push(name);
            }
        }
        assert!(over.is_empty(), "split these files:\n{}", over.join("\n"));
        assert!(
            fits.is_empty(),
            "these fit now; take them off OVERSIZED: {fits:?}"
        );
    }
}
