//! Rebuilds the crate whenever a file under `assets/` is changed, added or removed. The web UI
//! is embedded with `include_dir!`, which on stable Rust does not tell Cargo which files it
//! read, so without this a new module would be served as a 404 until something else changed.

fn main() {
    println!("cargo::rerun-if-changed=assets");
}
