//! Docker for the tests that need it (deploy.rs, the lab): whether a daemon answers, and the
//! quicswim image built FROM scratch around a statically linked binary.
//!
//! The static binary is the test binary's own `quicswim` when that one is static; otherwise
//! deploy/build-image.sh builds one in `<target>/deploy-static`, a target directory of its
//! own (the outer `cargo test` holds the usual one), which costs a release build of the whole
//! dependency tree the first time and nothing after: every test binary that asks for an image
//! reuses that build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::process::BIN;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the CLI crate sits in the workspace")
        .to_owned()
}

/// Why docker cannot be used here, or `None` when a daemon answers `docker version`. A
/// daemon that is installed but slow to answer (busy building an image, say) is asked again
/// for up to 30 s before the tests that need it give up, so a busy moment is not taken for
/// a machine without docker.
pub fn docker_unavailable() -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = match Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
        {
            Ok(out) => out,
            Err(e) => return Some(format!("cannot run `docker`: {e}")),
        };
        if out.status.success() {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(format!(
                "no docker daemon answers `docker version`: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether a docker daemon answers; says why `test` is skipped when not.
pub fn docker_answers_or_skip(test: &str) -> bool {
    match docker_unavailable() {
        None => true,
        Some(reason) => {
            eprintln!("{test}: skipped: {reason}");
            false
        }
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `docker ARGS`, which must succeed; its standard output, trimmed.
pub fn docker(args: &[&str]) -> String {
    let out = run(Command::new("docker").args(args));
    assert!(out.status.success(), "docker {args:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker ARGS` whose failure does not matter (cleaning up what may already be gone).
pub fn docker_quiet(args: &[&str]) {
    let _ = Command::new("docker").args(args).output();
}

/// Whether `path` is an ELF file without a program interpreter (PT_INTERP): it starts in
/// an empty image with no loader and no libraries.
pub fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    // 64-bit little-endian ELF only; anything else is built afresh.
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// An image tagged for one test, removed however the test ends.
pub struct Image(pub String);

impl Drop for Image {
    fn drop(&mut self) {
        docker_quiet(&["image", "rm", "--force", &self.0]);
    }
}

/// Builds the static image as `tag` with deploy/build-image.sh (see the module docs for where
/// its binary comes from); panics with the script's output if it fails.
pub fn build_static_image(tag: &str, test: &str) -> Image {
    let image = Image(tag.to_string());
    let bin = Path::new(BIN);
    // <target>/<profile>/quicswim
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in the target directory");
    let mut build = Command::new(repo().join("deploy/build-image.sh"));
    build.arg(&image.0);
    // What cargo set for this test binary must not reach the inner build: build scripts
    // (ring's, through cc) rerun when CARGO_MANIFEST_DIR or CARGO_PKG_NAME change, so the
    // static build would be redone between this test and build-image.sh run by hand.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo_test = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || key.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&&*key);
        if set_by_cargo_test {
            build.env_remove(&*key);
        }
    }
    if is_static_elf(bin) {
        build.env("QUICSWIM_BIN", bin);
    } else {
        build.env("CARGO_TARGET_DIR", target.join("deploy-static"));
        if let Ok(cargo) = std::env::var("CARGO") {
            build.env("CARGO", cargo);
        }
    }
    let started = Instant::now();
    let out = run(&mut build);
    eprintln!("{test}: build-image.sh took {:.1?}", started.elapsed());
    assert!(out.status.success(), "{}", describe(&out));
    image
}
