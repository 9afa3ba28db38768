//! The sans-IO layers stay sans-IO: no file under `src/protocol`, `src/ring` or `src/sim`
//! names a runtime, a socket, the file system, the wall clock or OS randomness.
//!
//! Only code counts. Comments may cite quinn-proto as the model, and `#[cfg(test)]` items may
//! take `Instant::now()` as an arbitrary epoch (std offers no other way to make an `Instant`);
//! neither reaches the library. This file names every forbidden word, so it only scans those
//! three directories.

use std::path::{Path, PathBuf};

const DIRS: [&str; 3] = ["src/protocol", "src/ring", "src/sim"];

/// `(pattern, must not be followed by an identifier character)`. Every pattern must start at
/// an identifier boundary, so `tokio` also catches `tokio_util` but not `mytokio`.
const FORBIDDEN: &[(&str, bool)] = &[
    ("tokio", false),
    ("quinn", false),
    ("Instant::now", true),
    ("SystemTime::now", true),
    ("thread_rng", true),
    ("rand::rng", true),
    ("OsRng", true),
    ("getrandom", false),
    ("from_entropy", true),
    ("from_os_rng", true),
    ("UdpSocket", true),
    ("TcpStream", true),
    ("TcpListener", true),
    ("std::fs", true),
];

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Two views of `src`, byte for byte the same length: `code` has comments blanked; `skeleton`
/// also has the insides of string and char literals blanked, so braces in it are real.
fn lex(src: &str) -> (Vec<u8>, Vec<u8>) {
    let b = src.as_bytes();
    let mut code = b.to_vec();
    let mut skeleton = b.to_vec();
    let blank = |v: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut v[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut code, i, end);
            blank(&mut skeleton, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut code, i, j);
            blank(&mut skeleton, i, j);
            i = j;
        } else if rest[0] == b'r'
            && (rest.starts_with(b"r\"") || rest.starts_with(b"r#"))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let open = i + 2 + hashes;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = b[open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| open + p);
            blank(&mut skeleton, open, end);
            i = (end + close.len()).min(b.len());
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut skeleton, i + 1, j.min(b.len()));
            i = j + 1;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '{'), or a lifetime ('a), which has no closing quote.
            let end = if rest.get(1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p)
            } else if rest.get(2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut skeleton, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    (code, skeleton)
}

/// Byte ranges of the items marked `#[cfg(test)]`: from the attribute to the item's closing
/// brace, or to its `;` for `mod tests;`.
fn test_items(skeleton: &[u8]) -> Vec<(usize, usize)> {
    let attr = b"#[cfg(test)]";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = skeleton[from..]
        .windows(attr.len())
        .position(|w| w == attr)
        .map(|p| from + p)
    {
        let mut j = p + attr.len();
        while j < skeleton.len() && skeleton[j] != b'{' && skeleton[j] != b';' {
            j += 1;
        }
        if j < skeleton.len() && skeleton[j] == b'{' {
            let mut depth = 0usize;
            while j < skeleton.len() {
                match skeleton[j] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        let end = (j + 1).min(skeleton.len());
        out.push((p, end));
        from = end;
    }
    out
}

/// The forbidden words `src` names in code outside test items, with their line numbers.
fn violations(src: &str) -> Vec<(usize, &'static str)> {
    let (mut code, skeleton) = lex(src);
    for (from, to) in test_items(&skeleton) {
        for c in &mut code[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    }
    let mut out = Vec::new();
    for &(word, bounded) in FORBIDDEN {
        let w = word.as_bytes();
        for (at, _) in code.windows(w.len()).enumerate().filter(|(_, s)| *s == w) {
            let left_ok = at == 0 || !is_ident(code[at - 1]);
            let right_ok = !bounded || code.get(at + w.len()).is_none_or(|&c| !is_ident(c));
            if left_ok && right_ok {
                let line = 1 + code[..at].iter().filter(|&&c| c == b'\n').count();
                out.push((line, word));
            }
        }
    }
    out.sort();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn sans_io_layers_name_no_runtime_socket_clock_or_os_randomness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    // The walk itself must find the layers, or this test passes for the wrong reason.
    for known in [
        "src/protocol/swim.rs",
        "src/protocol/codec.rs",
        "src/ring/hashring.rs",
        "src/sim/cluster.rs",
    ] {
        assert!(files.contains(&root.join(known)), "{known} not scanned");
    }
    let mut found = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable source");
        let shown = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        for (line, word) in violations(&text) {
            found.push(format!("{shown}:{line}: names `{word}`"));
        }
    }
    assert!(
        found.is_empty(),
        "the sans-IO layers must take time and randomness from their caller:\n{}",
        found.join("\n")
    );
}

#[test]
fn scanner_flags_code_and_skips_comments_and_test_items() {
    let src = r#"
//! Built like quinn-proto.
use std::time::Instant;
/* tokio would go /* nested */ here */
fn start() -> Instant { Instant::now() }
fn open() { let _ = std::fs::read("x"); }
fn brace() -> char { '{' }
const S: &str = "}";
#[cfg(test)]
mod tests {
    fn t() { let _ = std::time::Instant::now(); let _c = '}'; let _s = "{{"; }
}
fn late<'a>(x: &'a str) -> &'a str { let _ = rand::rng(); x }
fn fine() { let _ = rand::rngs::SmallRng::seed_from_u64(1); let _ = my_tokio_thing(); }
"#;
    assert_eq!(
        violations(src),
        vec![(5, "Instant::now"), (6, "std::fs"), (13, "rand::rng")]
    );
}
